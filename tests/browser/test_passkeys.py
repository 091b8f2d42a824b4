"""Passkeys in real Chromium with a CDP virtual authenticator: register one on /account/mfa,
sign in with it (twice, the sign count checked in the database), keep a pending authorization
request across the sign-in, refuse a cloned authenticator, use it as the second step after the
password, remove it.

WebAuthn refuses IP addresses as RP ids, so these pages are opened on http://localhost (a
secure context, like any loopback address); the issuer, and so the RP id, is the request's host.
"""

import pytest
from sqlalchemy import select

from identity.extensions import db
from identity.models import AuditEvent, Passkey, User, UserSession

pytestmark = pytest.mark.browser

AUTHENTICATOR = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                 "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True}


class Authenticator:
    """A virtual authenticator attached to one page (WebAuthn domain of the DevTools protocol)."""

    def __init__(self, page, **options):
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        self.id = self.cdp.send("WebAuthn.addVirtualAuthenticator",
                                {"options": {**AUTHENTICATOR, **options}})["authenticatorId"]

    def credentials(self) -> list[dict]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"]

    def add(self, credential: dict) -> None:
        self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.id, "credential": credential})


@pytest.fixture
def local(ui, live_server):
    """Page actions on http://localhost (an RP id must be a domain, not an IP address)."""
    return type(ui)(ui.page, f"http://localhost:{live_server.port}", ui.console)


def alice(seeded):
    user = seeded["users"][0]
    return user["username"], user["password"], user["name"]


def passkeys_of(app, username: str) -> list[Passkey]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        rows = list(db.session.scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)))
        db.session.expunge_all()
        return rows


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))
        db.session.expunge_all()
        return rows


def register_passkey(ui, username: str, password: str, name: str = "Test key") -> None:
    ui.sign_in(username, password)
    ui.goto("/account/mfa")
    ui.page.get_by_label("Name of the new passkey (optional)").fill(name)
    with ui.page.expect_navigation():  # the page reloads once the server has stored it
        ui.page.get_by_role("button", name="Add a passkey").click()
    assert ui.page.get_by_role("heading", name=name).is_visible(), ui.page.content()


def passkey_sign_in(ui, path: str = "/account/login"):
    """Press "Sign in with a passkey"; return the response to the form's POST."""
    ui.goto(path)
    return ui.submit_and_catch_post("#passkey-signin button[type=submit]")


def test_register_then_sign_in_twice_with_the_sign_count_checked(local, seeded, app, context):
    username, password, name = alice(seeded)
    authenticator = Authenticator(local.page)
    register_passkey(local, username, password)
    local.assert_looks_finished()
    [stored] = passkeys_of(app, username)
    [credential] = authenticator.credentials()
    assert credential["isResidentCredential"] and credential["rpId"] == "localhost"
    assert stored.sign_count == credential["signCount"]
    assert stored.backup_eligible is False  # a device-bound key: amr hwk

    local.sign_out()
    posted = passkey_sign_in(local)
    assert posted.status == 302, local.page.content()
    assert local.signed_in_as() == name
    first = passkeys_of(app, username)[0]
    assert first.sign_count == authenticator.credentials()[0]["signCount"] > stored.sign_count
    assert first.last_used_at is not None

    local.sign_out()
    assert passkey_sign_in(local).status == 302
    assert local.signed_in_as() == name
    second = passkeys_of(app, username)[0]
    assert second.sign_count == authenticator.credentials()[0]["signCount"] > first.sign_count
    used = events(app, "passkey_used")
    assert len(used) == 2 and all(e.detail["method"] == "hwk" and e.detail["user_verified"] for e in used)


def test_a_cloned_authenticator_is_refused_and_audited(local, seeded, app, browser, live_server, console):
    username, password, _ = alice(seeded)
    original = Authenticator(local.page)
    register_passkey(local, username, password)
    local.sign_out()
    assert passkey_sign_in(local).status == 302  # the original moves the count forward
    [credential] = original.credentials()
    assert credential["signCount"] >= 1

    # the same private key on another device, its counter behind the original's
    other = browser.new_context()
    try:
        copy_page = other.new_page()
        copy = Authenticator(copy_page)
        copy.add({**credential, "signCount": 0})
        clone = type(local)(copy_page, local.base_url, console)
        posted = passkey_sign_in(clone)
        assert posted.status == 400
        assert "copied" in clone.alert_text()
        assert clone.signed_in_as() is None
    finally:
        other.close()
    [alarm] = events(app, "passkey_clone_detected")
    assert alarm.detail["presented_count"] <= alarm.detail["stored_count"] == credential["signCount"]
    assert passkeys_of(app, username)[0].sign_count == credential["signCount"], "the count did not move back"


def test_the_pending_authorization_request_survives_a_passkey_sign_in(local, seeded, app):
    username, password, _ = alice(seeded)
    Authenticator(local.page)
    register_passkey(local, username, password)
    local.sign_out()
    local.goto("/connect/authorize?client_id=spa&response_type=code&scope=openid&"
               "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&state=s1&nonce=n1&"
               "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuHeDyyomLc&code_challenge_method=S256")
    assert "/account/login" in local.page.url
    posted = local.submit_and_catch_post("#passkey-signin button[type=submit]")
    assert posted.status == 302
    assert "/consent" in local.page.url, local.page.url
    assert "Single-Page App" in local.page.inner_text("main")


def test_removing_a_passkey(local, seeded, app):
    username, password, _ = alice(seeded)
    Authenticator(local.page)
    register_passkey(local, username, password, name="Old phone")
    # the session signed in with the password alone: it may not take away the new factor
    local.submit_and_catch_post("button[aria-label='Remove the passkey Old phone']")
    assert "sign in again" in local.alert_text()
    assert len(passkeys_of(app, username)) == 1
    local.sign_out()
    assert passkey_sign_in(local).status == 302  # a sign-in with the passkey may
    local.goto("/account/mfa")
    local.submit_and_catch_post("button[aria-label='Remove the passkey Old phone']")
    assert "Passkey removed." in local.alert_text()
    assert passkeys_of(app, username) == []
    local.sign_out()
    assert passkey_sign_in(local).status == 400
    assert local.signed_in_as() is None


def test_a_passkey_as_the_second_step_after_the_password(local, seeded, app):
    username, password, name = alice(seeded)
    Authenticator(local.page)
    register_passkey(local, username, password)
    local.sign_out()
    posted = local.sign_in(username, password)
    assert posted.status == 302 and "/account/login/mfa" in local.page.url
    local.assert_looks_finished()
    step = local.submit_and_catch_post("#passkey-second-step button[type=submit]")
    assert step.status == 302, local.page.content()
    assert local.signed_in_as() == name
    with app.app_context():
        amr = db.session.scalars(select(UserSession.amr).where(UserSession.revoked_at.is_(None))).all()
    assert amr == ["pwd hwk mfa"]

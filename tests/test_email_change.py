"""Verification links and the address change: the account page, POST /localapi/email/verification,
PUT /localapi/email; expired, reused, tampered and superseded links; the mail budget; lockout;
the notices to the old address."""

from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from actions import AuthActions
from mfa_actions import step_clock  # noqa: F401  (the fixture)
from statements import statements
from conftest import ALICE_PASSWORD, BOB_PASSWORD, csrf_token
from identity.clock import now
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import mail as outgoing
from test_localapi_support import LocalApi, bearer, problem_of


def alice(app) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        db.session.expunge(user)
        return user


def local(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + "?" + parts.query


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        found = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)))
        for e in found:
            db.session.expunge(e)
        return found


@pytest.fixture
def api(app, client, seeded):
    return LocalApi(app, client)


def send_verification(api, token=None):
    return api.client.post("/localapi/email/verification", headers=bearer(token or api.token()))


def change_email(api, email="alice@example.org", password=ALICE_PASSWORD, token=None):
    return api.client.put("/localapi/email", headers=bearer(token or api.token()),
                          json={"email": email, "current_password": password})


# --- verifying the current address ---------------------------------------------------------------------


def test_the_local_api_sends_a_link_that_verifies_the_address(app, api, mail):
    response = send_verification(api)
    assert response.status_code == 202
    assert response.get_data() == b""
    message = mail.wait_for(to="alice@example.com")
    link = mail.link(message)
    assert link.startswith("https://localhost/account/verify-email?token=")
    assert alice(app).email_verified is False  # sending proves nothing

    page = api.client.get(local(link))
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert '<meta name="referrer" content="no-referrer">' in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert alice(app).email_verified is True
    assert api.get_account(api.token()).get_json()["email_verified"] is True
    assert [e.user_id for e in events(app, "email_verified")] == [alice(app).id]


def test_nothing_to_verify_is_a_conflict(app, api, mail):
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "alice")).email_verified = True
        db.session.commit()
    response = send_verification(api)
    assert response.status_code == 409
    assert problem_of(response)["status"] == 409


def test_a_used_link_does_nothing_more(app, api, mail):
    send_verification(api)
    link = mail.link(mail.wait_for(to="alice@example.com"))
    assert api.client.get(local(link)).status_code == 200
    again = api.client.get(local(link))
    assert again.status_code == 400
    assert "does not work" in again.get_data(as_text=True)


@pytest.mark.parametrize("mangle", [
    lambda link: link[:-1] + ("A" if link[-1] != "A" else "B"),  # one character changed
    lambda link: link.split("token=")[0] + "token=",  # empty
    lambda link: link.split("token=")[0],  # none
    lambda link: link + "x" * 300,  # too long
])
def test_a_tampered_link_is_refused(app, api, mail, mangle):
    send_verification(api)
    link = mail.link(mail.wait_for(to="alice@example.com"))
    response = api.client.get(local(mangle(link)) if "?" in mangle(link) else urlsplit(mangle(link)).path)
    assert response.status_code == 400
    assert alice(app).email_verified is False
    assert api.client.get(local(link)).status_code == 200  # the real one still works


def test_an_expired_link_is_refused(app, api, mail, monkeypatch):
    send_verification(api)
    link = mail.link(mail.wait_for(to="alice@example.com"))
    later = now() + app.config["EMAIL_VERIFICATION_SECONDS"] + 1
    monkeypatch.setattr("identity.services.account_tokens.now", lambda: later)
    response = api.client.get(local(link))
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert alice(app).email_verified is False


def test_a_newer_link_supersedes_the_older(app, api, mail):
    send_verification(api)
    first = mail.link(mail.wait_for(to="alice@example.com"))
    send_verification(api)
    second = mail.link(mail.wait_for(to="alice@example.com", count=2))
    assert first != second
    assert api.client.get(local(first)).status_code == 400
    assert alice(app).email_verified is False
    assert api.client.get(local(second)).status_code == 200


@pytest.mark.parametrize("app_config", [{"EMAIL_VERIFICATION_MAILS_PER_HOUR": 2}])
def test_the_hourly_mail_budget_is_per_account(app, api, mail):
    assert send_verification(api).status_code == 202
    assert send_verification(api).status_code == 202
    third = send_verification(api)
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) > 0
    mail.wait_for(to="alice@example.com", count=2)
    assert len(mail.to("alice@example.com")) == 2


def user_locks(run: list[str]) -> list[str]:
    """The statements of `run` that lock a user's row (store/row_locks.py: FOR UPDATE on
    PostgreSQL, an UPDATE that changes nothing on SQLite)."""
    return [s for s in run if "users" in s and ("FOR UPDATE" in s or "FOR NO KEY UPDATE" in s
                                                 or s.startswith("UPDATE users SET id=users.id"))]


def test_a_link_takes_the_users_row_lock_once(app, api, mail):
    """The lock that makes requests for the user take turns is held from the first read to the
    commit: the mail budget's count runs under it, and takes it no second time."""
    token = api.token()
    with statements(app) as run:
        assert send_verification(api, token).status_code == 202
    assert len(user_locks(run.pooled)) == 1, user_locks(run.pooled)
    with statements(app) as run:
        assert change_email(api, token=token).status_code == 202
    assert len(user_locks(run.pooled)) == 1, user_locks(run.pooled)


# --- changing the address ------------------------------------------------------------------------------------


def test_a_change_waits_for_the_new_address_then_applies_and_notifies(app, api, mail):
    token = api.token()
    response = change_email(api, token=token)
    assert response.status_code == 202
    user = alice(app)
    assert (user.email, user.pending_email) == ("alice@example.com", "alice@example.org")
    assert api.get_account(token).get_json()["pending_email"] == "alice@example.org"

    notice = mail.wait_for(to="alice@example.com")
    assert "requested" in notice["Subject"]
    assert "a***@example.org" in mail.text(notice)
    assert "Mobile App" in mail.text(notice)  # from which client
    assert mail.links(notice) == []  # a notice carries no link
    link = mail.link(mail.wait_for(to="alice@example.org"))
    mail.clear()

    assert api.client.get(local(link)).status_code == 200
    user = alice(app)
    assert (user.email, user.email_verified, user.pending_email) == ("alice@example.org", True, None)
    assert api.get_account(token).get_json()["email"] == "alice@example.org"
    for address in ("alice@example.com", "alice@example.org"):
        changed = mail.wait_for(to=address)
        assert "was changed" in changed["Subject"]
        assert mail.links(changed) == []
    assert AuthActions(api.client).login("alice@example.org").status_code == 302
    assert [e.event for e in events(app, "email_changed")] == ["email_changed"]


def test_a_wrong_password_changes_nothing_and_counts_toward_lockout(app, api, mail):
    response = change_email(api, password="not-the-password-at-all")
    assert response.status_code == 400
    assert "current_password" in problem_of(response)["errors"]
    user = alice(app)
    assert (user.pending_email, user.failed_attempts) == (None, 1)
    assert mail.messages == []


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 2}])
def test_the_change_goes_through_the_lockout(app, api, mail):
    assert change_email(api, password="wrong-one-first-time").status_code == 400
    locked = change_email(api, password="wrong-two-second-time")
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    still = change_email(api)  # the right password, while locked
    assert still.status_code == 429
    assert alice(app).pending_email is None


def test_a_link_for_an_address_no_longer_asked_for_is_superseded(app, api, mail):
    change_email(api, email="first@example.org")
    first = mail.link(mail.wait_for(to="first@example.org"))
    change_email(api, email="second@example.org")
    second = mail.link(mail.wait_for(to="second@example.org"))
    assert api.client.get(local(first)).status_code == 400
    assert alice(app).email == "alice@example.com"
    assert api.client.get(local(second)).status_code == 200
    assert alice(app).email == "second@example.org"


def test_an_address_of_another_account_is_answered_the_same_and_its_owner_told(app, api, mail, flow_clients):
    """Everything the requester sees (the answer, the account, their own mailbox) is as for a free
    address; only the address's owner, who gets no link, can tell the difference."""
    token = api.token()
    response = change_email(api, email="BOB@example.com", token=token)
    assert response.status_code == 202
    assert api.get_account(token).get_json()["pending_email"] == "BOB@example.com"
    assert "requested" in mail.wait_for(to="alice@example.com")["Subject"]
    to_bob = mail.wait_for(to="bob@example.com")
    assert "bob" in mail.text(to_bob)
    assert "verify-email" not in mail.text(to_bob)

    assert send_verification(api, token).status_code == 202  # "sent again": nothing more to bob
    with app.app_context():
        assert outgoing.wait_until_sent()
    assert len(mail.to("bob@example.com")) == 1
    assert alice(app).email == "alice@example.com"
    assert [e.detail["reason"] for e in events(app, "email_change_refused")] == ["taken"]


@pytest.mark.parametrize("app_config", [{"EMAIL_VERIFICATION_MAILS_PER_HOUR": 2}])
def test_an_address_of_another_account_spends_the_budget_as_a_free_one(app, api, mail, flow_clients):
    """The budget's 429 comes at the same point for a taken address as for a free one: else it
    tells them apart."""
    def answers(token, address, password):
        return [change_email(api, email=address, password=password, token=token).status_code,
                send_verification(api, token).status_code, send_verification(api, token).status_code]

    free = answers(api.token(), "nobody-has-this@example.org", ALICE_PASSWORD)
    taken = answers(api.token(username="bob"), "alice@example.com", BOB_PASSWORD)
    assert free == taken == [202, 202, 429]


@pytest.mark.parametrize("app_config", [{"EMAIL_VERIFICATION_MAILS_PER_HOUR": 2}])
def test_the_owner_of_an_address_asked_for_gets_no_more_mails_than_the_budget(app, api, mail, flow_clients):
    token = api.token()
    answers = [change_email(api, email="bob@example.com", token=token).status_code for _ in range(4)]
    assert answers == [202, 202, 429, 429]
    with app.app_context():
        assert outgoing.wait_until_sent()
    assert len(mail.to("bob@example.com")) == 2


@pytest.mark.parametrize("body, field", [
    ({"email": "not-an-address", "current_password": ALICE_PASSWORD}, "email"),
    ({"email": "alice@example.com", "current_password": ALICE_PASSWORD}, "email"),  # the same address
    ({"current_password": ALICE_PASSWORD}, "email"),
    ({"email": "x@example.org"}, "current_password"),
    ({"email": "x@example.org", "current_password": ALICE_PASSWORD, "extra": 1}, "extra"),
    ({"email": "x\ud800@example.org", "current_password": ALICE_PASSWORD}, "email"),
    ({"email": "\u00df" * 300 + "@example.org", "current_password": ALICE_PASSWORD}, "email"),  # 612 once casefolded
    ({"email": "x@attacker.example(alice@example.org)", "current_password": ALICE_PASSWORD}, "email"),  # mailed to x@...
    ({"email": "bob(x)@example.com", "current_password": ALICE_PASSWORD}, "email"),  # bob's mailbox, not "taken"
])
def test_bad_bodies_are_validation_problems(app, api, mail, body, field):
    response = api.client.put("/localapi/email", headers=bearer(api.token()), json=body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert field in problem_of(response)["errors"]
    assert alice(app).pending_email is None


def test_the_address_is_taken_when_the_link_is_followed_too_late(app, api, mail, flow_clients):
    change_email(api, email="carol@example.org")
    link = mail.link(mail.wait_for(to="carol@example.org"))
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "bob")).email = "carol@example.org"
        db.session.scalar(select(User).where(User.username == "bob")).email_normalized = "carol@example.org"
        db.session.commit()
    response = api.client.get(local(link))
    assert response.status_code == 400
    assert "another account" in response.get_data(as_text=True)
    assert (alice(app).email, alice(app).pending_email) == ("alice@example.com", None)


def test_a_head_of_a_link_whose_address_was_taken_says_it_does_not_work(app, api, mail, flow_clients):
    """A mail scanner's HEAD answers whether the link would work (200 or 400) and changes nothing:
    one whose address another account took since answered 200, and the person's click then said
    the address belongs to another account."""
    change_email(api, email="carol@example.org")
    link = mail.link(mail.wait_for(to="carol@example.org"))
    assert api.client.head(local(link)).status_code == 200
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        bob.email = bob.email_normalized = "carol@example.org"
        db.session.commit()
    head = api.client.head(local(link))
    assert head.status_code == 400, "a HEAD said a link works whose address another account has now"
    assert alice(app).pending_email == "carol@example.org", "a HEAD ended the pending change"
    assert api.client.get(local(link)).status_code == 400


@pytest.mark.parametrize("how", ["change", "reset"])
def test_a_password_change_ends_a_pending_address_change(app, api, mail, how):
    """The notice to the current address says: if it was not you, change your password, and your
    address stays as it is. It did not: whoever asked for the change (they knew the password)
    still held the link mailed to their address, opened it after the owner's new password, and
    the account's address, where every reset link goes, became theirs."""
    import test_recovery

    token = api.token()
    assert change_email(api, email="taker@example.org", token=token).status_code == 202
    link = mail.link(mail.wait_for(to="taker@example.org"))
    assert "change your password" in mail.text(mail.wait_for(to="alice@example.com"))
    if how == "change":
        assert api.change_password(token).status_code == 204
    else:
        link_to_reset = test_recovery.reset_link(app, api.client, mail, count=2)
        assert test_recovery.reset(api.client, link_to_reset).status_code in (200, 302)
    assert alice(app).pending_email is None
    response = api.client.get(local(link))
    assert response.status_code == 400
    assert alice(app).email == "alice@example.com"
    assert events(app, "email_changed") == []


@pytest.mark.parametrize("factor", ["authenticator app", "passkey"])
def test_a_first_second_factor_ends_a_pending_address_change(app, api, mail, step_clock, factor):
    """An address change asked for before the account had a second factor was asked with the
    password alone; the owner who then sets up a factor (as the notice of the change suggests)
    kept the change pending: whoever asked held the link, and opening it gave them the address
    every reset link goes to. The first factor now ends it, as a new password does."""
    from mfa_actions import enrol_user
    from test_mfa_password import register_passkey

    assert change_email(api, email="taker@example.org").status_code == 202
    link = mail.link(mail.wait_for(to="taker@example.org"))
    if factor == "passkey":
        register_passkey(app)
    else:
        enrol_user(app)
    assert alice(app).pending_email is None
    response = api.client.get(local(link))
    assert response.status_code == 400
    assert alice(app).email == "alice@example.com"
    assert events(app, "email_changed") == []


def test_a_disabled_account_s_pending_change_dies_for_good(app, api, mail):
    """A session that asked to move the account to an address of its choosing, then the operator
    disabled the account (a takeover, say): the link mailed to that address applied the change
    anyway, and with it the address every later reset link goes to. The disable now ends the
    pending change and its links, and they stay dead after `users enable`."""
    from identity.services import user_status

    change_email(api, email="taker@example.org")
    link = mail.link(mail.wait_for(to="taker@example.org"))
    with app.app_context():
        assert user_status.disable_user("alice").changed
    response = api.client.get(local(link))
    assert response.status_code == 400
    user = alice(app)
    assert (user.email, user.pending_email) == ("alice@example.com", None)
    with app.app_context():
        assert user_status.enable_user("alice").changed
    assert api.client.get(local(link)).status_code == 400
    assert alice(app).email == "alice@example.com"
    assert events(app, "email_changed") == []


def test_no_verification_link_opens_while_the_account_is_disabled(app, api, mail):
    """Disabled behind the service's back (a direct database change): the link still opens nothing."""
    send_verification(api)
    link = mail.link(mail.wait_for(to="alice@example.com"))
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "alice")).enabled = False
        db.session.commit()
    assert api.client.get(local(link)).status_code == 400
    assert alice(app).email_verified is False
    assert [e.detail for e in events(app, "email_verification_failed")] == [{"reason": "disabled"}]


# --- the account page ---------------------------------------------------------------------------------------


def test_the_account_page_sends_a_link_and_changes_the_address(app, client, seeded, mail):
    AuthActions(client).login()
    page = client.get("/account/email")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "not confirmed yet" in html
    response = client.post("/account/email", data={"send-csrf_token": csrf_token(html)})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "We sent a link to alice@example.com" in response.get_data(as_text=True)
    mail.wait_for(to="alice@example.com")

    page = client.get("/account/email").get_data(as_text=True)
    tokens = [m for m in __import__("re").findall(r'name="([a-z]+-)?csrf_token"[^>]*value="([^"]+)"', page)]
    change_token = [t for prefix, t in tokens if prefix == "change-"][0]
    wrong = client.post("/account/email", data={"change-csrf_token": change_token, "change-email": "a@example.org",
                                                "change-current_password": "wrong-password-here"})
    assert wrong.status_code == 400
    assert "incorrect" in wrong.get_data(as_text=True)
    done = client.post("/account/email", data={"change-csrf_token": change_token, "change-email": "a@example.org",
                                               "change-current_password": ALICE_PASSWORD})
    assert done.status_code == 200
    assert "a@example.org" in done.get_data(as_text=True)
    assert alice(app).pending_email == "a@example.org"
    link = mail.link(mail.wait_for(to="a@example.org"))
    assert client.get(local(link)).status_code == 200
    assert "confirmed" in client.get("/account/email").get_data(as_text=True)
    assert alice(app).email == "a@example.org"


def test_the_account_page_needs_a_sign_in(client, seeded):
    response = client.get("/account/email")
    assert response.status_code == 302
    assert "/account/login" in response.headers["Location"]


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_EMAIL": "2 per hour"}])
def test_address_requests_are_rate_limited_per_access_token(app, api, mail):
    """Per token, not per client address: the users behind a carrier NAT address do not share it
    (tests/test_localapi_review.py); the account's hourly mail budget is counted in the database."""
    token = api.token()
    assert send_verification(api, token).status_code == 202
    assert change_email(api, email="new@example.org", token=token).status_code == 202
    limited = send_verification(api, token)
    assert limited.status_code == 429
    assert limited.mimetype == "application/problem+json"
    assert change_email(api, email="other@example.org", token=token).status_code == 429
    assert alice(app).pending_email == "new@example.org"


def _send_from_the_page(client):
    page = client.get("/account/email").get_data(as_text=True)
    return client.post("/account/email", data={"send-csrf_token": csrf_token(page)})


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_EMAIL": "1 per hour"}])
def test_the_address_page_limit_counts_per_user_not_per_client_address(app, flow_clients, mail):
    """The contract: per-IP limits allow at least 1,000 a minute beyond sign-in and password change,
    since mobile users share carrier NAT addresses. RATELIMIT_EMAIL on the signed-in address pages
    counted per client address, so one user's link used up the hour for everyone behind that address
    (the local API counts it per token for this reason). It counts per signed-in user now."""
    first, second = app.test_client(), app.test_client()  # two people behind one address (127.0.0.1)
    AuthActions(first).login()
    AuthActions(second).login("bob", BOB_PASSWORD)
    assert _send_from_the_page(first).status_code == 200
    assert _send_from_the_page(second).status_code == 200
    assert _send_from_the_page(first).status_code == 429  # each user is still held to the limit

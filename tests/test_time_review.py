"""Lifetimes and clocks at their boundaries: what a page or header says about time agrees with
the data it comes from."""

import re
import time

import pytest
from sqlalchemy import select, update

from actions import AuthActions
from identity.extensions import db
from identity.models import User
from mfa_actions import CLOCK, code_at, enrol_user, post_mfa, step_clock  # noqa: F401


@pytest.fixture(autouse=True)
def _clock(step_clock):
    return step_clock


def _lock_alice(app, seconds: int) -> None:
    with app.app_context():
        db.session.execute(update(User).where(User.username == "alice").values(locked_until=int(time.time()) + seconds))
        db.session.commit()


def _seconds_said(html: str) -> int:
    return int(re.search(r"Try again in (\d+) seconds", html).group(1))


def test_the_factors_page_tells_the_lock_time_left_not_the_whole_lockout(client, app, seeded):
    """An account locked earlier (by sign-in failures elsewhere) has 100 of its LOCKOUT_SECONDS
    (300) left: the factors page says so, as the password page does, not 300."""
    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol_user(app)
    _lock_alice(app, 100)
    refused = post_mfa(client, "regenerate", otp=code_at(secret))
    assert refused.status_code == 400
    assert 95 <= _seconds_said(refused.get_data(as_text=True)) <= 100


@pytest.mark.parametrize("app_config", [{"EMAIL_VERIFICATION_MAILS_PER_HOUR": 2}])
def test_the_mail_budgets_retry_after_is_when_a_link_leaves_the_hour(app, client, seeded, mail):
    """Two links 3,000 seconds ago spent the hourly budget of 2: the 429's Retry-After is the
    ~600 seconds until the older leaves the hour, not a whole hour; and after it, a link is sent."""
    from identity.models import AccountToken
    from test_email_change import send_verification
    from test_localapi_support import LocalApi

    api = LocalApi(app, client)

    def backdate(seconds: int) -> None:
        with app.app_context():
            db.session.execute(update(AccountToken).values(created_at=AccountToken.created_at - seconds))
            db.session.commit()

    assert send_verification(api).status_code == 202
    assert send_verification(api).status_code == 202
    backdate(3000)
    refused = send_verification(api)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 595 <= retry_after <= 601
    backdate(retry_after - 2)
    assert send_verification(api).status_code == 429  # two seconds early: still refused
    backdate(2)
    assert send_verification(api).status_code == 202


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_SENSITIVE": "2 per minute"}])
def test_a_rate_limits_retry_after_is_when_its_window_resets(client, seeded):
    """The window of "2 per minute" began at the first attempt, 3 seconds before the refused one:
    it resets in 57 seconds, which Retry-After says (not the whole minute)."""
    auth = AuthActions(client)
    started = time.time()
    assert 429 not in [auth.login(password="wrong-password-123").status_code for _ in range(2)]
    time.sleep(3)
    limited = auth.login(password="wrong-password-123")
    assert limited.status_code == 429
    left = started + 60 - time.time()  # about 57
    assert left - 1 <= int(limited.headers["Retry-After"]) <= left + 1.5



def test_introspection_gives_a_refresh_tokens_exp_as_its_family_end_when_sooner(app, client, flow_clients):
    """The operator shortens REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS while a refresh token is
    outstanding: the token stops at its family's new end (the refresh grant's rule), and
    introspection's `exp` says that time, not the 30 days stored at its issue."""
    import base64

    from actions import OAuthActions

    assert AuthActions(client).login().status_code == 302
    oauth = OAuthActions(client)
    tokens = oauth.code_flow(client_id="web", scope="openid offline_access")[0].get_json()
    auth_time = int(time.time())
    app.config["REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS"] = 1000
    web = {"Authorization": "Basic " + base64.b64encode(b"web:web-secret-0123456789").decode()}
    body = client.post("/connect/introspect", data={"token": tokens["refresh_token"]}, headers=web).get_json()
    assert body["active"] is True
    assert auth_time - 5 + 1000 <= body["exp"] <= auth_time + 1000, body


@pytest.mark.parametrize("app_config", [{"SESSION_IDLE_SECONDS": 600, "SESSION_ABSOLUTE_SECONDS": 3600}])
def test_the_remember_cookie_renewed_by_a_password_change_expires_with_its_session(app, client, seeded):
    """"Keep me signed in" expires no later than the session's absolute end (docs/deployment.md);
    a password change 3,000 seconds into a session of 3,600 renews the cookie, which then expires
    in ~600 seconds with its session, not 3,600 seconds later."""
    from email.utils import parsedate_to_datetime

    from identity.models import UserSession
    from test_browser_review import REMEMBER, _change_password

    assert AuthActions(client).login(remember=True).status_code == 302
    with app.app_context():
        db.session.execute(update(UserSession).values(created_at=UserSession.created_at - 3000))
        db.session.commit()
        ends = db.session.scalar(select(UserSession.created_at)) + 3600
    response = _change_password(client)
    assert response.status_code == 200, response.get_data(as_text=True)
    renewed = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(REMEMBER + "=")]
    assert len(renewed) == 1
    expires = [p.split("=", 1)[1] for p in renewed[0].split("; ") if p.lower().startswith("expires=")]
    assert parsedate_to_datetime(expires[0]).timestamp() <= ends + 2, (renewed[0], ends - time.time())


def test_a_shorter_refresh_token_lifetime_applies_to_tokens_outstanding(app, client, flow_clients):
    """REFRESH_TOKEN_LIFETIME_SECONDS: a refresh token expires this long after it was issued. The
    operator shortens it to 1,000 s; a token issued 2,000 s ago under the 30-day default is past
    it, as its family would be past a shortened absolute lifetime: the grant and introspection refuse it."""
    import base64

    from actions import OAuthActions
    from identity.models import RefreshToken

    assert AuthActions(client).login().status_code == 302
    oauth = OAuthActions(client)
    tokens = oauth.code_flow(client_id="web", scope="openid offline_access")[0].get_json()
    with app.app_context():
        db.session.execute(update(RefreshToken).values(issued_at=RefreshToken.issued_at - 2000))
        db.session.commit()
    app.config["REFRESH_TOKEN_LIFETIME_SECONDS"] = 1000
    web = {"Authorization": "Basic " + base64.b64encode(b"web:web-secret-0123456789").decode()}
    introspected = client.post("/connect/introspect", data={"token": tokens["refresh_token"]}, headers=web).get_json()
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert (introspected, refreshed.status_code) == ({"active": False}, 400), refreshed.get_json()
    assert refreshed.get_json()["error"] == "invalid_grant"


def test_instances_on_either_side_of_an_access_token_alg_change_make_no_new_keys(app, seeded):
    """docs/signing-keys.md: while an instance still runs with the old ACCESS_TOKEN_SIGNING_ALG it
    signs with the old key, which the updated instances retired (published for the retention time).
    The old instance took the retired key for a missing one and made a new ES256 key, signing at
    once, which the updated instance retired at its next reload, and so on: a new key in the JWKS
    (for 14 days each) every SIGNING_KEY_RELOAD_SECONDS for as long as the rollout lasted."""
    from identity.services import keys
    from test_key_rotation import kids_by_alg
    from test_keys import issue, kid_of, same_database_app

    es256_kid = kid_of(issue(app))  # ES256, the default
    moved = same_database_app(app, ACCESS_TOKEN_SIGNING_ALG="RS256")
    try:
        for _ in range(3):  # each reloads its key ring, in turn
            with moved.app_context():
                keys._reload()
            with app.app_context():
                keys._reload()
        assert kids_by_alg(app, "ES256") == [es256_kid]
        assert kid_of(issue(app)) == es256_kid  # the old instance still signs with the old key
    finally:
        with moved.app_context():
            db.engine.dispose()


def test_at_its_last_second_a_refresh_token_is_listed_as_the_grant_takes_it(app, client, flow_clients, monkeypatch):
    """At the second a refresh token expires (expires_at == now) the refresh grant still takes it
    (issued_grants.refresh_token_usable); the grants page lists its app then, as the sessions page does."""
    from actions import OAuthActions
    from identity.models import Consent, RefreshToken
    from identity.services import consent, devices, issued_grants

    assert AuthActions(client).login().status_code == 302
    OAuthActions(client).code_flow(client_id="web", scope="openid offline_access")
    with app.app_context():
        db.session.execute(Consent.__table__.delete())
        expires_at = db.session.scalar(select(RefreshToken.expires_at))
        db.session.commit()
    for module in (consent, issued_grants):
        monkeypatch.setattr(module, "now", lambda: expires_at)
    monkeypatch.setattr(devices.clock, "now", lambda: expires_at)
    with app.app_context():
        from identity.models import User
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        assert [e.kind for e in devices.list_entries(alice)].count("app") == 1  # the sessions list: live
        assert [g.client_id for g in consent.list_grants(alice)] == ["web"]


def test_revoking_an_app_revokes_its_token_still_accepted_within_the_leeway(app, client, flow_clients, monkeypatch):
    """The bearer check accepts an access token up to JWT_LEEWAY_SECONDS past its exp (the
    revocation list and the purge keep it that long). Revoking the app 10 seconds past the exp of
    its password-grant token (no refresh token: a standalone one) put nothing on the list, and the
    token went on working for the 20 seconds left."""
    from actions import OAuthActions
    from identity.models import User
    from identity.services import issued_grants, tokens
    from mfa_actions import claims

    from conftest import ALICE_PASSWORD

    body = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                      scope="openid").get_json()
    later = claims(body["access_token"])["exp"] + 10
    monkeypatch.setattr(tokens, "now", lambda: later)
    monkeypatch.setattr(issued_grants, "now", lambda: later)
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/connect/userinfo", headers=bearer).status_code == 200  # within the leeway
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        issued_grants.revoke_user_client_grants(alice, "legacy")
        db.session.commit()
    assert client.get("/connect/userinfo", headers=bearer).status_code == 401




def test_revoking_an_app_revokes_its_token_an_instance_whose_clock_is_behind_still_accepts(app, client, flow_clients,
                                                                                           monkeypatch):
    """Past JWT_LEEWAY_SECONDS after its exp by this instance's clock, a token is still accepted by
    an instance whose clock is up to CLOCK_DIFFERENCE_ALLOWED_SECONDS behind (the deny list and
    the purge keep its record that long: bearer_cache.accepted_past_expiry). Revoking the app
    then left its standalone token (a password grant's) off the list: the revocation cut at the
    leeway alone, where the family tokens' cut allows the minute. That instance kept accepting it."""
    from actions import OAuthActions
    from identity.models import RevokedAccessToken, User
    from identity.services import bearer_cache, issued_grants
    from mfa_actions import claims

    from conftest import ALICE_PASSWORD

    body = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                      scope="openid").get_json()
    token = claims(body["access_token"])
    later = token["exp"] + app.config["JWT_LEEWAY_SECONDS"] + bearer_cache.CLOCK_DIFFERENCE_ALLOWED_SECONDS // 2
    monkeypatch.setattr(issued_grants, "now", lambda: later)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        issued_grants.revoke_user_client_grants(alice, "legacy")
        db.session.commit()
        assert db.session.get(RevokedAccessToken, token["jti"]) is not None


def test_the_grants_page_lists_an_app_while_its_token_lives_after_its_lifetime_was_shortened(app, client,
                                                                                              flow_clients,
                                                                                              monkeypatch):
    """An app signed in with the code flow without offline_access holds an access token for its
    client's access_token_lifetime (600 s for `web`). The operator then shortens the lifetime to
    60 s (`clients update`): the token issued before still lives its 600 s, and the grants page must
    list the app (so it can be revoked) until then, not judge the token by the new lifetime."""
    from actions import OAuthActions
    from identity.models import Client, Consent
    from identity.services import consent

    assert AuthActions(client).login().status_code == 302
    body = OAuthActions(client).code_flow(client_id="web", scope="openid")[0].get_json()
    assert body["expires_in"] == 600 and "refresh_token" not in body
    with app.app_context():
        db.session.execute(Consent.__table__.delete())
        db.session.execute(update(Client).where(Client.client_id == "web").values(access_token_lifetime=60))
        db.session.commit()
    later = int(time.time()) + 300  # past the new lifetime, within the 600 seconds the token was issued for
    monkeypatch.setattr(consent, "now", lambda: later)
    assert "No apps have access" not in client.get("/account/grants").get_data(as_text=True)
    monkeypatch.setattr(consent, "now", lambda: later + 301)  # and not after the token expired
    assert "No apps have access" in client.get("/account/grants").get_data(as_text=True)


def test_the_grants_page_lists_a_standalone_token_issued_after_a_password_change_whatever_the_lifetime_now(
        app, client, flow_clients):
    """A password-grant token (no refresh token: standalone) issued just after the password
    changed is live; its app is listed. Judged by its expiry minus the client's lifetime now, a
    lifetime lengthened since made it look issued before the change, and the app was not listed."""
    from actions import OAuthActions
    from conftest import ALICE_PASSWORD
    from identity.models import Client, User

    stamp = int(time.time())
    with app.app_context():
        db.session.execute(update(User).where(User.username == "alice").values(password_changed_at=stamp - 1))
        db.session.commit()
    body = OAuthActions(client).token("legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
                                      scope="openid").get_json()
    assert "refresh_token" not in body
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "legacy")
                           .values(access_token_lifetime=Client.access_token_lifetime + 1000))
        db.session.commit()
    assert AuthActions(client).login().status_code == 302
    assert "No apps have access" not in client.get("/account/grants").get_data(as_text=True)

"""Requests that race for the same rows, on SQLite and PostgreSQL: real concurrent HTTP requests
on a live server (each request its own thread, app context and database session), released
together by a barrier; and, where the two must meet at one point, another worker's app doing its
change while a request is at that point (races.other_workers). A form sent twice at once (a
double click) must be answered as one sent once, never with the database's refusal of a
duplicate row; what must happen once (a session ended, a mail within its budget, a change of
password) happens once."""

import json

import pytest
import requests
from sqlalchemy import func, select

from actions import AuthActions
from identity.extensions import db
from identity.models import Consent, RecoveryCode, TotpFactor, User
from identity.services.seed import apply_seed, load_seed
from mfa_actions import SECRET_RE, code_at, enrol_user, step_clock  # noqa: F401  (a fixture)
from races import other_workers
from servers import authorize, csrf_from, redirect_params, run_together, sign_in

ROUNDS = 4
PASSWORD = "tulip-quartz-harbor-917"
REDIRECT_URI = "http://127.0.0.1:9/callback"
SEED = {
    "api_scopes": [],
    "clients": [
        {"client_id": "asks", "client_name": "Asking Client", "client_secrets": ["asks-secret-0123456789"],
         "allowed_grant_types": ["authorization_code"], "redirect_uris": [REDIRECT_URI], "require_consent": True,
         "require_pkce": True, "allowed_scopes": ["openid", "profile", "email"]},
    ],
    "users": [{"username": "alice", "email": "alice@example.com", "password": PASSWORD, "name": "Alice Example"}],
}


@pytest.fixture
def race_seeded(app):
    with app.app_context():
        apply_seed(load_seed(json.dumps(SEED)))
    return SEED


def signed_in(base: str, username: str = "alice", password: str = PASSWORD) -> requests.Session:
    browser = requests.Session()
    response = sign_in(browser, base, username, password)
    assert response.status_code == 302, response.text
    return browser


def raised(responses: list) -> list:
    for response in responses:
        if isinstance(response, BaseException):
            raise response
    return responses


# --- consent ------------------------------------------------------------------------------------


def test_the_consent_form_sent_twice_at_once_remembers_once_and_answers_both(app, live_server, race_seeded):
    """Allow with "remember" clicked twice: both answers go back to the client with a code (no
    503 from the consent row's unique key), and one consent row is remembered."""
    base = live_server.url
    browser = signed_in(base)
    for round_ in range(ROUNDS):
        with app.app_context():
            db.session.execute(Consent.__table__.delete())
            db.session.commit()
        response, _ = authorize(browser, base, client_id="asks", redirect_uri=REDIRECT_URI, scope="openid profile")
        assert response.status_code == 302 and response.headers["Location"].startswith("/consent?"), response.text
        page = browser.get(base + response.headers["Location"], timeout=30)
        form = {"csrf_token": csrf_from(page.text), "decision": "allow", "remember": "y"}
        post = lambda: browser.post(base + response.headers["Location"], data=form, timeout=30, allow_redirects=False)
        answers = raised(run_together(post, post))
        assert [a.status_code for a in answers] == [303, 303], f"round {round_}: {[(a.status_code, a.text[:300]) for a in answers]}"
        assert all("code" in redirect_params(a) for a in answers), [a.headers.get("Location") for a in answers]
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Consent)) == 1


# --- second factors -------------------------------------------------------------------------------


def signed_in_with_code(app, base: str) -> tuple[requests.Session, str]:
    """alice with an authenticator app, signed in with both steps (a recent second factor):
    the browser and the app's secret."""
    secret, _ = enrol_user(app)
    browser = requests.Session()
    first = sign_in(browser, base, "alice", PASSWORD)
    assert first.status_code == 302 and "/account/login/mfa" in first.headers["Location"], first.headers
    page = browser.get(base + "/account/login/mfa", timeout=30)
    second = browser.post(base + "/account/login/mfa", timeout=30, allow_redirects=False,
                          data={"csrf_token": csrf_from(page.text), "code": code_at(secret)})
    assert second.status_code == 302, second.text
    return browser, secret


def mfa_form_twice_at_once(browser: requests.Session, base: str, action: str) -> list:
    page = browser.get(base + "/account/mfa", timeout=30)
    form = {"csrf_token": csrf_from(page.text), "action": action}
    post = lambda: browser.post(base + "/account/mfa", data=form, timeout=30, allow_redirects=False)
    return raised(run_together(post, post))


def test_new_recovery_codes_asked_for_twice_at_once_leave_one_set(app, live_server, race_seeded, step_clock):
    """Regenerate clicked twice: the codes shown last are the only ones that work; the set the
    other answer made (which the browser dropped) does not stay usable beside them."""
    base = live_server.url
    browser, _ = signed_in_with_code(app, base)
    for round_ in range(ROUNDS):
        answers = mfa_form_twice_at_once(browser, base, "regenerate")
        assert [a.status_code for a in answers] == [200, 200], [(a.status_code, a.text[:300]) for a in answers]
        with app.app_context():
            unused = db.session.scalar(select(func.count()).select_from(RecoveryCode).where(RecoveryCode.used_at.is_(None)))
        assert unused == 10, f"round {round_}: {unused} usable recovery codes"


def test_setting_up_the_app_clicked_twice_at_once_starts_one_enrolment(app, live_server, race_seeded):
    """"Set up an authenticator app" clicked twice: both answers are pages (no 503 from the
    factor row's unique user), and one enrolment is pending. The page shows a secret only to the
    browser whose cookie holds that enrolment's digest, and of two starts at once the cookie may
    keep the other's: it then shows none, never one that is not pending, and a new start shows
    the pending one."""
    base = live_server.url
    browser = signed_in(base)
    for round_ in range(ROUNDS):
        answers = mfa_form_twice_at_once(browser, base, "start")
        assert [a.status_code for a in answers] == [200, 200], f"round {round_}: {[(a.status_code, a.text[:300]) for a in answers]}"
        found = SECRET_RE.search(browser.get(base + "/account/mfa", timeout=30).text)
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(TotpFactor)) == 1
            from identity.services import mfa
            user_id = db.session.scalar(select(User.id))
            pending = mfa.pending_totp_secret(user_id)
        assert found is None or found.group(1) == pending, f"round {round_}: a secret that is not pending was shown"
    page = browser.get(base + "/account/mfa", timeout=30)  # one more start, alone this time
    started = browser.post(base + "/account/mfa", data={"csrf_token": csrf_from(page.text), "action": "start"}, timeout=30)
    shown = SECRET_RE.search(browser.get(base + "/account/mfa", timeout=30).text)
    assert started.status_code == 200 and shown is not None
    with app.app_context():
        assert shown.group(1) == mfa.pending_totp_secret(user_id)


# --- a sign-in whose password changes while it is checked ------------------------------------------

NEW_PASSWORD = "copper-lantern-meadow-356"


def changed_by_another_worker_during_the_check(monkeypatch, database_uri, change) -> dict:
    """While the next sign-in verifies its password (after its read of the user, before its
    writes), another worker runs `change(user_id)` in its own app and commits."""
    from identity.services import accounts

    original, done = accounts.verify_password_evenly, {}  # the sign-in's check (the page and the password grant)

    def hooked(stored, password):
        right = original(stored, password)
        if not done:
            done["changed"] = True
            with other_workers(database_uri) as (other,), other.app_context():
                change(db.session.scalar(select(User.id).where(User.username == "alice")))
        return right

    monkeypatch.setattr(accounts, "verify_password_evenly", hooked)
    return done


def signs_in(app, password: str) -> bool:
    response = AuthActions(app.test_client()).login("alice", password)
    return response.status_code == 302 and "/account/login/mfa" not in response.headers["Location"]


def test_a_sign_in_that_rehashes_does_not_undo_a_password_change_made_meanwhile(app, client, seeded, database_uri,
                                                                               monkeypatch):
    """alice's hash was made at a lower cost than the current one, so her next sign-in rehashes
    her password; a password change committed while that sign-in checks the old password keeps
    the new one: the rehash of the old password does not overwrite it."""
    from identity.services import accounts

    app.config["ARGON2_TIME_COST"] = 2  # alice's stored hash (cost 1) now needs a rehash
    done = changed_by_another_worker_during_the_check(
        monkeypatch, database_uri, lambda user_id: accounts.change_password(user_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD))
    AuthActions(client).login("alice", PASSWORD)
    assert done
    monkeypatch.undo()
    assert signs_in(app, NEW_PASSWORD), "the new password no longer signs in"
    assert not signs_in(app, PASSWORD), "the old password signs in again"


def _change_password(user_id: int) -> None:
    from identity.services import accounts

    accounts.change_password(user_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD)


def _disable(user_id: int) -> None:
    from identity.services import user_status

    user_status.disable_user("alice")


@pytest.mark.parametrize("change", [_change_password, _disable], ids=["password-changed", "disabled"])
def test_a_sign_in_checked_while_the_password_changes_or_the_user_is_disabled_starts_no_session(
        app, client, seeded, database_uri, monkeypatch, change):
    """A password change (or a disable) ends every session of the user; a sign-in with the old
    password that was being checked when it committed must not start one after it."""
    from identity.models import UserSession

    done = changed_by_another_worker_during_the_check(monkeypatch, database_uri, change)
    response = AuthActions(client).login("alice", PASSWORD)
    assert done
    with app.app_context():
        live = db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.revoked_at.is_(None)))
    assert live == 0, f"{live} live session after the change ({response.status_code} {response.headers.get('Location')})"
    page = client.get("/account/sessions")
    assert page.status_code == 302 and "/account/login" in page.headers["Location"], page.status_code


def changed_by_another_worker_before_the_tokens_are_stored(monkeypatch, database_uri, change) -> dict:
    """As changed_by_another_worker_during_the_check, once the password was checked and the
    tokens signed, just before the token endpoint stores its refresh token."""
    from identity.services import issued_grants

    original, done = issued_grants.keep_issued_tokens, {}

    def hooked(*args, **kwargs):
        if not done:
            done["changed"] = True
            with other_workers(database_uri) as (other,), other.app_context():
                change(db.session.scalar(select(User.id).where(User.username == "alice")))
        return original(*args, **kwargs)

    monkeypatch.setattr(issued_grants, "keep_issued_tokens", hooked)
    return done


@pytest.mark.parametrize("when", [changed_by_another_worker_during_the_check,
                                  changed_by_another_worker_before_the_tokens_are_stored],
                         ids=["during-the-check", "before-the-tokens-are-stored"])
def test_a_password_grant_checked_while_the_password_changes_keeps_no_refresh_token(
        app, client, flow_clients, database_uri, monkeypatch, when):
    """The password grant with offline_access: a refresh token stored after a password change
    that committed while the old password was checked would outlive the change (which revoked
    the user's refresh tokens before it existed)."""
    from actions import OAuthActions

    done = when(monkeypatch, database_uri, _change_password)
    oauth = OAuthActions(client)
    response = oauth.token("legacy", grant_type="password", username="alice", password=PASSWORD,
                           scope="openid offline_access")
    assert done
    refresh_token = (response.get_json() or {}).get("refresh_token")
    if response.status_code == 200 and refresh_token:
        rotated = oauth.token("legacy", grant_type="refresh_token", refresh_token=refresh_token)
        assert rotated.status_code == 400, f"the refresh token outlived the password change: {rotated.status_code}"
    else:
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant", response.get_data()


# --- addresses ------------------------------------------------------------------------------------


def test_two_accounts_following_links_to_the_same_new_address_at_once(app, live_server, race_seeded):
    """alice and bob both asked for the same new address and follow their links at once: one
    gets it, the other is told it is taken (no 503 from the address's unique key)."""
    from identity.services import account_tokens

    with app.app_context():
        apply_seed(load_seed(json.dumps({"users": [{"username": "bob", "email": "bob@example.com",
                                                    "password": "marble-violet-canyon-482"}]})))
    base = live_server.url
    for round_ in range(ROUNDS):
        address = f"shared{round_}@example.com"
        links = []
        with app.app_context():
            for user in db.session.scalars(select(User).where(User.username.in_(["alice", "bob"]))):
                user.pending_email = address
                links.append(account_tokens.issue(user.id, account_tokens.VERIFY_EMAIL, 3600, email=address))
            db.session.commit()
        answers = raised(run_together(*(lambda link=link: requests.get(base + "/account/verify-email",
                                                                        params={"token": link}, timeout=30)
                                        for link in links)))
        assert sorted(a.status_code for a in answers) == [200, 400], f"round {round_}: {[(a.status_code, a.text[:200]) for a in answers]}"
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(User).where(User.email == address)) == 1


# --- the hourly mail budgets ------------------------------------------------------------------------


def test_forgot_password_sent_many_times_at_once_mails_at_most_the_hourly_budget(app, live_server, race_seeded):
    """PASSWORD_RESET_MAILS_PER_HOUR (3) is the most reset mails an account gets in an hour,
    counted in the database: eight requests naming alice at once must not each find the count
    below it and each mail a link."""
    from identity.models import AccountToken

    base = live_server.url

    def forgot():
        browser = requests.Session()
        page = browser.get(base + "/account/forgot-password", timeout=30)
        return lambda: browser.post(base + "/account/forgot-password", timeout=30,
                                    data={"csrf_token": csrf_from(page.text), "username": "alice"})

    answers = raised(run_together(*(forgot() for _ in range(8))))
    assert [a.status_code for a in answers] == [200] * 8
    with app.app_context():
        links = db.session.scalar(select(func.count()).select_from(AccountToken))
    assert links <= app.config["PASSWORD_RESET_MAILS_PER_HOUR"], f"{links} reset links mailed"


def test_verification_links_asked_for_many_times_at_once_stay_within_the_hourly_budget(app, live_server, race_seeded):
    """EMAIL_VERIFICATION_MAILS_PER_HOUR (3), counted in the database, holds for requests at once."""
    from identity.models import AccountToken

    base = live_server.url
    browser = signed_in(base)
    page = browser.get(base + "/account/email", timeout=30)
    form = {"send-csrf_token": csrf_from(page.text)}
    post = lambda: browser.post(base + "/account/email", data=form, timeout=30)
    answers = raised(run_together(*(post for _ in range(8))))
    assert sorted({a.status_code for a in answers}) in ([200], [200, 400]), [a.status_code for a in answers]
    with app.app_context():
        links = db.session.scalar(select(func.count()).select_from(AccountToken))
    assert links <= app.config["EMAIL_VERIFICATION_MAILS_PER_HOUR"], f"{links} verification links mailed"


# --- two password changes at once, on SQLite too ----------------------------------------------------


def test_two_password_changes_at_once_from_the_same_current_password_one_wins(app, race_seeded):
    """Both give the same (right) current password at once: one changes it, the other is told its
    current password is no longer right; no lost update (the version goes up by one, the hash is
    the winner's). On SQLite, which has no row locks (FOR UPDATE is ignored), both succeeded and
    the first one's new password was silently lost. (It replaces test_postgres_concurrency.py's
    test of the same race, which ran on PostgreSQL only, once.)"""
    from identity.errors import ValidationFailed
    from identity.services import accounts
    from identity.services.passwords import verify_password

    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        user_id, version_before = user.id, user.password_version
    new_passwords = ["copper-lantern-meadow-582", "violet-anchor-summit-931"]

    def change(new_password):
        def call():
            with app.app_context():
                try:
                    accounts.change_password(user_id, PASSWORD, new_password, new_password)
                    return "changed"
                except ValidationFailed as err:
                    return err.errors
                finally:
                    db.session.remove()
        return call

    for round_ in range(ROUNDS):
        current = PASSWORD if round_ == 0 else None
        if current is None:  # back to the first password for the next round
            with app.app_context():
                accounts.set_password("alice", PASSWORD)
                version_before = db.session.get(User, user_id).password_version
        outcomes = raised(run_together(change(new_passwords[0]), change(new_passwords[1])))
        assert outcomes.count("changed") == 1, f"round {round_}: {outcomes}"
        assert list(next(o for o in outcomes if o != "changed")) == ["current_password"], outcomes
        winner = new_passwords[outcomes.index("changed")]
        with app.app_context():
            user = db.session.get(User, user_id)
            assert verify_password(user.password_hash, winner), "the winner's new password was lost"
            assert not verify_password(user.password_hash, next(p for p in new_passwords if p != winner))
            assert not verify_password(user.password_hash, PASSWORD)
            assert user.password_version == version_before + 1


# --- sign-out -------------------------------------------------------------------------------------


def test_sign_out_clicked_twice_at_once_tells_each_client_once(app, live_server, flow_clients):
    """Two sign-outs of one browser session at once queue one back-channel logout token per
    client, not one per request."""
    from sqlalchemy import update

    from identity.models import Client, LogoutDelivery
    from servers import authorize as authorize_pkce

    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web")
                           .values(backchannel_logout_uri="https://web.example.com/logout"))
        db.session.commit()
    base = live_server.url
    for round_ in range(ROUNDS):
        browser = signed_in(base)
        response, _ = authorize_pkce(browser, base, client_id="web", redirect_uri="https://web.example.com/cb")
        assert response.status_code == 302 and "code=" in response.headers["Location"], response.headers
        page = browser.get(base + "/account/logout", timeout=30)
        form = {"csrf_token": csrf_from(page.text)}
        post = lambda: browser.post(base + "/account/logout", data=form, timeout=30, allow_redirects=False)
        answers = raised(run_together(post, post))
        assert [a.status_code for a in answers] == [200, 200], [(a.status_code, a.text[:200]) for a in answers]
        with app.app_context():
            queued = db.session.scalar(select(func.count()).select_from(LogoutDelivery))
            db.session.execute(LogoutDelivery.__table__.delete())
            db.session.commit()
        assert queued == 1, f"round {round_}: {queued} logout tokens queued for one session's one client"


def test_a_grant_ended_twice_tells_its_client_once(app, live_server, flow_clients):
    """A refresh token's family ends once: revoking it twice at once (RFC 7009), or again after,
    queues one back-channel logout token for the client, not one per request."""
    from sqlalchemy import update

    from identity.models import Client, LogoutDelivery
    from servers import authorize as authorize_pkce, token_request

    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web")
                           .values(backchannel_logout_uri="https://web.example.com/logout"))
        db.session.commit()
    base = live_server.url
    browser = signed_in(base)
    for round_ in range(ROUNDS):
        response, verifier = authorize_pkce(browser, base, client_id="web", redirect_uri="https://web.example.com/cb",
                                            scope="openid offline_access")
        code = redirect_params(response)["code"]
        tokens = token_request(base, "web", "web-secret-0123456789", grant_type="authorization_code", code=code,
                               redirect_uri="https://web.example.com/cb", code_verifier=verifier).json()
        revoke = lambda: requests.post(base + "/connect/revocation", data={"token": tokens["refresh_token"]},
                                       auth=("web", "web-secret-0123456789"), timeout=30)
        answers = raised(run_together(revoke, revoke)) + [revoke()]
        assert [a.status_code for a in answers] == [200, 200, 200], [(a.status_code, a.text) for a in answers]
        with app.app_context():
            queued = db.session.scalar(select(func.count()).select_from(LogoutDelivery))
            db.session.execute(LogoutDelivery.__table__.delete())
            db.session.commit()
        assert queued == 1, f"round {round_}: {queued} logout tokens queued for one grant's end"

"""Review: what another of alice's browsers or apps is issued while her password change runs. A
password change (the page, the local API, a reset link, `flask users set-password`, the seed's
reset or disable, `users disable`: all end grants in accounts.revoke_grants_and_sessions) holds
her row FOR NO KEY UPDATE, which an insert of a code or a refresh token (KEY SHARE, for its
foreign key) does not wait for. A refresh token committed after the change's revocation of her
refresh tokens, and before its commit, was never revoked, and its rotations carry the new
password's version. The grant is issued by another worker, in a thread started at a hook inside
the change's transaction; the waits are those PostgreSQL reports (pg_stat_activity), never
timing. PostgreSQL only: on SQLite the change holds the database's one write lock from its first
write, so the other worker's insert waits for its commit."""

import contextlib
import threading

import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, LogoutDelivery, RefreshToken, User, UserSession
from identity.services import issued_grants
from identity.store import browser_sessions as session_rows
from identity.store import issued_grants as grant_rows
from races import MOBILE_REDIRECT, in_thread, mobile_code, other_workers, wait_until
from test_backchannel_logout import set_client
from test_localapi_support import CHEAP_ARGON2
from test_redemption_review import _lock_waits, phones_worker
from test_sessions_devices import browser

NEW_PASSWORD = "cobalt-meadow-lantern-8135"


@pytest.fixture
def app_config():
    return dict(CHEAP_ARGON2)


@pytest.fixture(autouse=True)
def postgresql_only(database_uri):
    if not database_uri.startswith("postgresql"):
        pytest.skip("SQLite: the change holds the database's one write lock from its first write")


def _code_form(phone) -> dict:
    """A fresh code of the phone's browser (signed in already) for mobile-pkce, as its token form."""
    verifier, challenge = pkce_pair()
    response = OAuthActions(phone).authorize(client_id="mobile-pkce", redirect_uri=MOBILE_REDIRECT,
                                             scope="openid offline_access", code_challenge=challenge,
                                             code_challenge_method="S256")
    code = redirect_params(response.headers["Location"])["code"]
    return dict(grant_type="authorization_code", code=code, code_verifier=verifier, redirect_uri=MOBILE_REDIRECT)


def _run_to_its_end_or_its_wait(app, thread: threading.Thread) -> None:
    """Let `thread` run until it ends or waits for a lock (one the change holds: it is joined later)."""
    wait_until(lambda: not thread.is_alive() or bool(_lock_waits(app)), timeout=60)


def _change_password(here):
    page = here.get("/account/password").get_data(as_text=True)
    return here.post("/account/password", data={
        "csrf_token": csrf_token(page), "current_password": ALICE_PASSWORD, "new_password": NEW_PASSWORD,
        "confirm_password": NEW_PASSWORD})


def _unrevoked_refresh_tokens(app) -> list[int]:
    """alice's refresh tokens neither revoked nor rotated, as committed."""
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        ids = db.session.scalars(select(RefreshToken.id).where(
            RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None),
            RefreshToken.consumed_at.is_(None))).all()
        db.session.rollback()
    return ids


def _refused(answer) -> bool:
    return answer.status_code == 400 and answer.get_json().get("error") == "invalid_grant"


def _no_grant_outlives_the_change(app, client, client_id: str, answer) -> None:
    """The grant an app asked for during the change: refused, or its refresh token refused now;
    and no refresh token of alice's left unrevoked."""
    assert not isinstance(answer, BaseException), answer
    if answer.status_code == 200:
        answer = OAuthActions(client).token(client_id, grant_type="refresh_token",
                                            refresh_token=answer.get_json()["refresh_token"])
    assert _refused(answer), (answer.status_code, answer.get_json())
    assert _unrevoked_refresh_tokens(app) == []


@contextlib.contextmanager
def _thiefs_copy(database_uri, here):
    """Another worker, and a browser on it with a copy of `here`'s cookies (shown to work, which
    fills the worker's caches)."""
    with phones_worker(database_uri, "one statement") as thiefs_app:
        copy = thiefs_app.test_client()
        for cookie in here._cookies.values():
            copy.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
        warm_up = _code_form(copy)
        assert OAuthActions(thiefs_app.test_client()).token("mobile-pkce", **warm_up).status_code == 200
        yield thiefs_app, copy


def _minting_first(app, copy, results: dict):
    """revoke_user_sessions, which first has the copy given a code (its token form: results["minted"])."""
    ending_sessions = session_rows.revoke_user_sessions

    def then_the_copy_mints_a_code(*args, **kwargs):
        if "minted" not in results:
            minting = in_thread(results, "minted", lambda: _code_form(copy))
            _run_to_its_end_or_its_wait(app, minting)
            assert not minting.is_alive(), _lock_waits(app)
        return ending_sessions(*args, **kwargs)
    return then_the_copy_mints_a_code


def test_a_code_minted_and_redeemed_in_another_browser_during_a_password_change_does_not_outlive_it(
        app, flow_clients, client, database_uri, monkeypatch):
    """alice is signed in in two browsers; she changes her password on her computer (the page,
    which keeps that browser signed in). While the change ran (her codes expired, her refresh
    tokens revoked, her other sessions not yet ended), the phone's browser, signed in as her (a
    thief's, say), had its app given a code and redeemed it: its refresh token was committed after
    the change had revoked hers, and was never revoked. The phone's browser was signed out by the
    change, but its app kept refreshing, each new access token carrying the new password's
    version, for the refresh token's whole lifetime. It is now revoked with the rest."""
    results: dict = {}
    with phones_worker(database_uri, "one statement") as phones_app:
        phone = phones_app.test_client()
        warm_up = mobile_code(phone, "openid")  # signs the phone in, and fills its worker's caches
        assert OAuthActions(phones_app.test_client()).token("mobile-pkce", **warm_up).status_code == 200
        here = browser(app)
        ending_sessions = session_rows.revoke_user_sessions

        def then_the_phone_is_issued_a_grant(*args, **kwargs):
            if "redeemed" not in results:
                def grant():
                    form = _code_form(phone)
                    return OAuthActions(phones_app.test_client()).token("mobile-pkce", **form)

                granting = in_thread(results, "redeemed", grant)
                _run_to_its_end_or_its_wait(app, granting)
                assert not granting.is_alive(), _lock_waits(app)  # nothing the change holds stops it
            return ending_sessions(*args, **kwargs)

        monkeypatch.setattr(session_rows, "revoke_user_sessions", then_the_phone_is_issued_a_grant)
        changed = _change_password(here)
    assert changed.status_code in (200, 302), changed.status_code
    _no_grant_outlives_the_change(app, client, "mobile-pkce", results["redeemed"])
    with app.app_context():  # the phone's browser signed out, the computer's kept
        assert len(db.session.scalars(select(UserSession.id).where(UserSession.revoked_at.is_(None))).all()) == 1
        db.session.rollback()


def test_a_password_grant_checked_before_a_password_change_stores_no_refresh_token_after_it(
        app, flow_clients, client, database_uri, monkeypatch):
    """An app signs alice in with the password grant (her old password, right when it was checked)
    as she changes her password: its refresh token was inserted after the change had revoked hers
    and before the change committed, checking her password version as its statement saw it (the
    old one, the change not committed). It was never revoked, and its rotations carried the new
    password's version: the old password kept a grant working. The grant now waits for the change
    and is refused."""
    results: dict = {}
    reached, go = threading.Event(), threading.Event()
    keeping = issued_grants.keep_issued_tokens

    def kept_once_told(*args, **kwargs):
        reached.set()
        assert go.wait(60)
        return keeping(*args, **kwargs)

    here = browser(app)
    with other_workers(database_uri) as (apps_worker,):
        monkeypatch.setattr(issued_grants, "keep_issued_tokens", kept_once_told)
        granting = in_thread(results, "granted", lambda: OAuthActions(apps_worker.test_client()).token(
            "legacy", grant_type="password", username="alice", password=ALICE_PASSWORD,
            scope="openid offline_access"))
        assert reached.wait(60), results  # the password checked, the token not yet stored
        ending_sessions = session_rows.revoke_user_sessions

        def then_the_grant_is_stored(*args, **kwargs):
            if not go.is_set():
                go.set()
                _run_to_its_end_or_its_wait(app, granting)
            return ending_sessions(*args, **kwargs)

        monkeypatch.setattr(session_rows, "revoke_user_sessions", then_the_grant_is_stored)
        changed = _change_password(here)
        granting.join(60)
    assert changed.status_code in (200, 302), changed.status_code
    _no_grant_outlives_the_change(app, client, "legacy", results["granted"])
    assert AuthActions(app.test_client()).login(password=NEW_PASSWORD).status_code == 302


def test_a_code_minted_by_a_copy_of_the_changing_browsers_cookie_during_the_change_does_not_redeem_after_it(
        app, flow_clients, client, database_uri, monkeypatch):
    """alice changes her password on her computer (the page, which keeps that browser signed in
    under a new cookie, so that a copy of the old one signs nobody in). A thief holding a copy of
    her computer's cookie had an app given a code while the change ran (her codes already
    expired, the session still found by the old cookie): once the change committed, the code
    redeemed, since the session it names lives on, into tokens carrying the new password's
    version. The code must end with the password it was minted under."""
    results: dict = {}
    here = browser(app)
    with _thiefs_copy(database_uri, here) as (thiefs_app, copy):
        monkeypatch.setattr(session_rows, "revoke_user_sessions", _minting_first(app, copy, results))
        changed = _change_password(here)
        assert changed.status_code in (200, 302), changed.status_code
        form = results["minted"]
        assert not isinstance(form, BaseException), form
        redeemed = OAuthActions(thiefs_app.test_client()).token("mobile-pkce", **form)
    assert _refused(redeemed), (redeemed.status_code, redeemed.get_json())
    assert _unrevoked_refresh_tokens(app) == []
    assert here.get("/account/sessions").status_code == 200  # the computer is still signed in


def test_a_code_of_the_changing_browsers_cookie_copy_redeemed_as_the_change_commits_leaves_no_grant(
        app, flow_clients, client, database_uri, monkeypatch):
    """As above, but the copy's app redeems its code while the change runs: read before the change
    committed (the versions matched, the session live), spent after (its statement waited at the
    kept session's row, which the change had just given a new cookie sid). The statement found the
    session live and stored a refresh token under the old version, after the change's revocation
    of her refresh tokens: refused when used (the version), but never revoked, so its app was told
    of no logout and the grant stayed listed as live. The redemption is now refused, and its
    family revoked as the change revokes the others (its client told, reason password_changed)."""
    set_client(app, "mobile-pkce", backchannel_logout_uri="https://mobile.example.com/logout")
    results: dict = {}
    here = browser(app)
    with _thiefs_copy(database_uri, here) as (thiefs_app, copy):
        renewing_sid = session_rows.renew_sid

        def then_the_copy_redeems_it(*args, **kwargs):
            renewed = renewing_sid(*args, **kwargs)
            if "redeemed" not in results:
                form = results["minted"]
                assert not isinstance(form, BaseException), form
                redeeming = in_thread(results, "redeemed", lambda: OAuthActions(thiefs_app.test_client()).token(
                    "mobile-pkce", **form))
                results["redeeming"] = redeeming
                _run_to_its_end_or_its_wait(app, redeeming)
                assert redeeming.is_alive(), results["redeemed"]  # it waits at the kept session's row
            return renewed

        monkeypatch.setattr(session_rows, "revoke_user_sessions", _minting_first(app, copy, results))
        monkeypatch.setattr(session_rows, "renew_sid", then_the_copy_redeems_it)
        changed = _change_password(here)
        assert changed.status_code in (200, 302), changed.status_code
        results["redeeming"].join(60)
    redeemed = results["redeemed"]
    assert not isinstance(redeemed, BaseException), redeemed
    assert _refused(redeemed), (redeemed.status_code, redeemed.get_json())
    assert _unrevoked_refresh_tokens(app) == []
    with app.app_context():
        told = db.session.scalars(select(LogoutDelivery.reason).where(LogoutDelivery.client_id == "mobile-pkce")).all()
        db.session.rollback()
    assert "password_changed" in told
    assert here.get("/account/sessions").status_code == 200  # the computer is still signed in


def _password_changed_revocations(app) -> list:
    """The token_revoked events recorded with reason password_changed (each names its family)."""
    with app.app_context():
        details = db.session.scalars(select(AuditEvent.detail).where(AuditEvent.event == "token_revoked")).all()
        db.session.rollback()
    return [detail for detail in details if (detail or {}).get("reason") == "password_changed"]


def _logout_reasons(app, client_id: str) -> list[str]:
    with app.app_context():
        reasons = db.session.scalars(select(LogoutDelivery.reason).where(LogoutDelivery.client_id == client_id)
                                     .order_by(LogoutDelivery.id)).all()
        db.session.rollback()
    return list(reasons)


@pytest.mark.parametrize("scope", ["openid offline_access", "openid"], ids=["refresh token", "code only"])
@pytest.mark.parametrize("mover", [["users", "disable", "alice"], ["sessions", "end", "alice"]], ids=" ".join)
def test_a_code_whose_family_what_moved_the_version_ended_first_is_not_revoked_again_as_a_password_change(
        app, flow_clients, database_uri, monkeypatch, mover, scope):
    """The phone's app redeems a code as an operator disables alice, or signs her out everywhere
    (`sessions end alice`): its consume commits first, then the operator's revocation, which ends
    the grant (its refresh token, or, a code's alone, its session, whose clients it tells), then
    the redemption reads her new password version and refuses the code. It revoked the family
    again as a password change: a second token_revoked event, mislabelled password_changed, and,
    for a grant of no refresh token, a second logout token for the same client and session. It
    records and tells nothing more now: what moved the version ended the grant."""
    set_client(app, "mobile-pkce", backchannel_logout_uri="https://mobile.example.com/logout")
    results: dict = {}
    reading = grant_rows.code_after_consume

    def once_the_operator_ended_her_grants(*args):
        if "moved" not in results:
            moving = in_thread(results, "moved", lambda: app.test_cli_runner().invoke(args=mover))
            moving.join(60)
            assert not moving.is_alive(), _lock_waits(app)
        return reading(*args)

    with phones_worker(database_uri, "one statement") as phones_app:
        phone = phones_app.test_client()
        warm_up = mobile_code(phone, "openid")  # signs the phone in, and fills its worker's caches
        assert OAuthActions(phones_app.test_client()).token("mobile-pkce", **warm_up).status_code == 200
        form = mobile_code(phone, scope)
        told_before = _logout_reasons(app, "mobile-pkce")
        monkeypatch.setattr(grant_rows, "code_after_consume", once_the_operator_ended_her_grants)
        redeemed = OAuthActions(phones_app.test_client()).token("mobile-pkce", **form)
    moved = results["moved"]
    assert not isinstance(moved, BaseException), moved
    assert moved.exit_code == 0, moved.output
    assert _refused(redeemed), (redeemed.status_code, redeemed.get_json())
    assert _unrevoked_refresh_tokens(app) == []
    told = _logout_reasons(app, "mobile-pkce")[len(told_before):]
    assert "password_changed" not in told, told  # one token for the phone's session, not a second
    assert _password_changed_revocations(app) == []

"""Review: every credential against every event that must end it. The credentials this server
hands out or keeps pending (a browser session, an unredeemed code, a refresh token, an access
token, a reset or verification link, a pending address change or enrolment, a remembered
consent) are put, one by one, against the events that must end them or spare them (a password
change, `users disable`, `sessions end`, a sign-out, a client changed or removed, a grant
revoked, ...), the credential used at once after the event, and while it runs where the two can
meet (tests/races.py: the other request is made at a chosen statement, never by timing)."""

import json

import pytest
from sqlalchemy import select

from actions import AuthActions, OAuthActions, pkce_pair, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from identity.errors import SecondFactorRequired, ValidationFailed
from identity.extensions import db
from identity.models import AccountToken, AuditEvent, AuthorizationCode, RefreshToken, User
from identity.services import accounts, mfa, passkeys, user_status, verification
from identity.web.second_factor import FACTORS_CHANGED, NEEDS_CODE
from mfa_actions import code_at, enrol_user, step_clock  # noqa: F401  (the fixture)
from races import amid_the_first, in_thread, lock_waiters, mobile_code, other_workers, wait_until
from webauthn_keys import SoftKey

NEW_PASSWORD = "a-long-new-passphrase-here"
PASSKEY_ISSUER = "https://id.example.com"


def test_sessions_end_also_ends_a_grant_whose_code_was_redeemed_while_it_ran(app, seeded, runner, client,
                                                                              database_uri):
    """An operator signs a user out everywhere (`sessions end alice`, a stolen phone) while the
    phone's app redeems a code its browser session had just minted: the command listed the
    user's entries, then ended them, and the grant the code started in between was in no entry.
    The command said it had ended everything, and yet `sessions list` still showed the app grant
    and its refresh token kept working."""
    form = mobile_code(client, "openid offline_access")
    redeemed = {}

    def redeem():  # the app, on another worker, right after the command has listed the entries
        with other_workers(database_uri) as (other,):
            redeemed["response"] = OAuthActions(other.test_client()).token("mobile-pkce", **form)

    with app.app_context(), amid_the_first("FROM refresh_tokens", redeem) as ran:
        result = runner.invoke(args=["sessions", "end", "alice"])
    assert ran and result.exit_code == 0, result.output
    assert redeemed["response"].status_code == 200, redeemed["response"].get_json()
    refresh_token = redeemed["response"].get_json()["refresh_token"]

    listed = runner.invoke(args=["sessions", "list", "alice", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output) == [], listed.output
    refreshed = OAuthActions(client).token("mobile-pkce", grant_type="refresh_token", refresh_token=refresh_token)
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant", refreshed.get_json()
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        live = db.session.scalars(select(RefreshToken.id).where(RefreshToken.user_id == alice,
                                                                RefreshToken.revoked_at.is_(None),
                                                                RefreshToken.consumed_at.is_(None))).all()
        assert live == []


def _change_password(other_app, user_id: int) -> None:
    with other_app.app_context():
        accounts.change_password(user_id, ALICE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD)


def _disable_and_enable(other_app, user_id: int) -> None:
    with other_app.app_context():
        user_status.disable_user("alice")
        user_status.enable_user("alice")


def _set_up_a_first_factor(other_app, user_id: int) -> None:
    enrol_user(other_app, "alice")


@pytest.mark.parametrize("event, answer", [
    (_change_password, {"current_password": ["The current password is incorrect."]}),
    (_disable_and_enable, {"current_password": ["The current password is incorrect."]}),
    (_set_up_a_first_factor, SecondFactorRequired),
], ids=["password changed", "disabled", "first factor"])
def test_an_address_change_asked_as_the_password_changes_does_not_outlive_it(app, seeded, mail, database_uri,
                                                                             monkeypatch, step_clock, event, answer):
    """Someone who has alice's password asks to move her account to their address; at that moment
    alice changes her password (or sets up an authenticator app, or the operator disables the
    account and enables it again once it is safe): each of these ends a pending address change.
    The request checked the password (and whether a code was needed), then wrote the pending
    address without looking again: the change, asked under the account's earlier state, was kept
    after the event, and its link then moved the account to the other address, where the reset
    links go."""
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
    real_verify, happened = verification.verify_password, []

    def verify_then_event(stored_hash, password):  # the event commits on another worker, right after the check
        right = real_verify(stored_hash, password)
        if not happened:
            happened.append(1)
            with other_workers(database_uri) as (other,):
                event(other, alice)
        return right

    monkeypatch.setattr(verification, "verify_password", verify_then_event)
    with app.app_context():
        try:
            verification.request_email_change(alice, "mallory@example.org", ALICE_PASSWORD)
            refused = None
        except (ValidationFailed, SecondFactorRequired) as err:
            refused = err
        db.session.rollback()
        user = db.session.get(User, alice)
        assert happened and (user.email, user.pending_email) == ("alice@example.com", None)
        if isinstance(answer, dict):
            assert isinstance(refused, ValidationFailed) and refused.errors == answer
        else:
            assert isinstance(refused, answer)
        links = db.session.scalars(select(AccountToken.id).where(AccountToken.user_id == alice,
                                                                 AccountToken.purpose == "verify_email")).all()
        assert links == []
        reasons = [e.detail.get("reason") for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.event.in_(("email_change_failed", "email_change_requested"))))]
        assert reasons == ["changed_meanwhile"]
    assert mail.to("mallory@example.org") == []


def test_a_code_left_with_no_scope_by_scopes_remove_issues_nothing(app, seeded, runner, client):
    """An app's code asked for one API scope only, which the operator then retires (`clients
    update` takes it from the app, `scopes remove` deletes it). Redeemed between the two, the code
    was refused (invalid_scope: a scope since removed from the client); but `scopes remove` took
    the scope out of the code and left it with none, and the code then redeemed to an access
    token of no scope, which the token endpoint otherwise never issues."""
    assert runner.invoke(args=["scopes", "add", "reports"]).exit_code == 0
    added = runner.invoke(args=["clients", "add", "reporter", "--public", "--grant-type", "authorization_code",
                                "--redirect-uri", "https://reporter.example.com/cb", "--scope", "openid",
                                "--scope", "reports"])
    assert added.exit_code == 0, added.output
    assert AuthActions(client).login().status_code == 302
    verifier, challenge = pkce_pair()
    response = client.get("/connect/authorize", query_string={
        "client_id": "reporter", "response_type": "code", "scope": "reports", "state": "s",
        "redirect_uri": "https://reporter.example.com/cb", "code_challenge": challenge, "code_challenge_method": "S256"})
    code = redirect_params(response.headers["Location"])["code"]
    assert runner.invoke(args=["clients", "update", "reporter", "--scope", "openid"]).exit_code == 0
    removed = runner.invoke(args=["scopes", "remove", "reports"])
    assert removed.exit_code == 0, removed.output

    redeemed = client.post("/connect/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": "reporter",
        "redirect_uri": "https://reporter.example.com/cb", "code_verifier": verifier})
    assert (redeemed.status_code, redeemed.get_json().get("error")) == (400, "invalid_scope"), redeemed.get_json()
    with app.app_context():
        row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.client_id == "reporter"))
        assert row.consumed_at is not None and row.issued_jti is None  # spent, and nothing issued with it


def app_set_up_after_the_password_check(module, database_uri, monkeypatch) -> list:
    """From now on, alice sets up her authenticator app on another worker right after `module`'s
    next password check (accounts: a password change; verification: an address change); the list
    returned holds 1 once she has."""
    real_verify, happened = module.verify_password, []

    def verify_then_set_up(stored_hash, password):
        right = real_verify(stored_hash, password)
        if not happened:
            happened.append(1)
            with other_workers(database_uri) as (other,):
                enrol_user(other, "alice")
        return right

    monkeypatch.setattr(module, "verify_password", verify_then_set_up)
    return happened


def test_a_password_changed_as_a_first_factor_is_set_up_asks_for_its_code(app, seeded, database_uri, monkeypatch,
                                                                          step_clock):
    """alice sets up an authenticator app so that her password alone no longer changes anything;
    at that moment someone signed in with her password alone (no factor then, so no code asked)
    changes the password. The change had asked whether a code was needed before it checked the
    password, and not again: it went through without one, after the app that requires it."""
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        version = db.session.get(User, alice).password_version
        db.session.rollback()
    happened = app_set_up_after_the_password_check(accounts, database_uri, monkeypatch)
    with app.app_context():
        try:
            accounts.change_password(alice, ALICE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
            refused = None
        except SecondFactorRequired as err:
            refused = err
        db.session.rollback()
        assert happened and db.session.get(User, alice).password_version == version
        assert isinstance(refused, SecondFactorRequired)
        user = db.session.get(User, alice)
        assert (user.failed_attempts, user.locked_until) == (0, 0)  # the password was right: nothing counted
        failures = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "password_change_failed")).all()
        assert [e.detail.get("reason") for e in failures] == ["changed_meanwhile"]


def _signed_in_grant(client) -> dict:
    """alice signed in in `client`'s browser, and mobile-pkce's offline grant of that sign-in."""
    response = OAuthActions(client).token("mobile-pkce", **mobile_code(client, "openid offline_access IdentityServerApi"))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _userinfo(client, access_token: str) -> int:
    return client.get("/connect/userinfo", headers={"Authorization": "Bearer " + access_token}).status_code


def test_an_emergency_key_rotation_ends_the_access_tokens_and_spares_the_grant_and_the_session(app, seeded, runner,
                                                                                                client):
    """`keys rotate --now` refuses the access tokens the old keys signed and, as docs/signing-keys.md
    promises, nothing else: the app's refresh token (an opaque handle) gets it a token the new key
    signed, which works, and the browser stays signed in."""
    tokens = _signed_in_grant(client)
    assert _userinfo(client, tokens["access_token"]) == 200
    assert runner.invoke(args=["keys", "rotate", "--now"]).exit_code == 0
    assert _userinfo(client, tokens["access_token"]) == 401
    refreshed = OAuthActions(client).token("mobile-pkce", grant_type="refresh_token",
                                           refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert _userinfo(client, refreshed.get_json()["access_token"]) == 200
    assert client.get("/account/sessions").status_code == 200


def test_an_operators_mfa_reset_spares_the_session_and_the_grants(app, seeded, runner, client, step_clock):
    """`users mfa-reset` (a lost phone) removes the factors and, as docs/mfa.md says, ends no session
    or grant: the browser stays signed in, the app's refresh token still refreshes, and its access
    token still works."""
    tokens = _signed_in_grant(client)
    enrol_user(app, "alice")
    reset = runner.invoke(args=["users", "mfa-reset", "alice"])
    assert reset.exit_code == 0 and "Removed" in reset.output, reset.output
    assert client.get("/account/sessions").status_code == 200
    assert _userinfo(client, tokens["access_token"]) == 200
    refreshed = OAuthActions(client).token("mobile-pkce", grant_type="refresh_token",
                                           refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()


@pytest.mark.parametrize("factor", ["app", "passkey"])
@pytest.mark.parametrize("change", ["address", "password"])
def test_a_first_factor_confirmed_after_a_changes_second_look_still_ends_or_stops_it(app, seeded, mail, database_uri,
                                                                                    monkeypatch, step_clock, change,
                                                                                    factor):
    """The address and password changes ask again, under the user's row lock, whether a code is
    needed (a first factor set up meanwhile). The set-up itself took no such lock: on PostgreSQL
    alice's "Confirm", committed after that second look, neither waited for the change nor found
    anything to end (the pending address was not written yet), and the change asked with the
    password alone was kept after the factor that was to stop it. Either order of the two is
    right: the change first, then ended by the factor; or the factor first, and the change refused."""
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        version = db.session.get(User, alice).password_version
        if factor == "app":
            secret = mfa.start_totp(alice)
            set_up = lambda: mfa.confirm_totp(alice, code_at(secret))  # noqa: E731
            enabled = "mfa_enabled"
        else:
            ceremony, key = passkeys.registration_options(alice, PASSKEY_ISSUER), SoftKey()
            answer = key.registration(ceremony.state["challenge"], origin=PASSKEY_ISSUER, rp_id="id.example.com")
            set_up = lambda: [passkeys.register(alice, PASSKEY_ISSUER, ceremony.state, answer).id]  # noqa: E731
            enabled = "passkey_registered"
        db.session.remove()
    module = verification if change == "address" else accounts
    real_code_required, confirmed, threads = module.mfa.code_required, {}, []

    calls = []

    def confirm_after_the_second_look(user_id, otp, *, recent_mfa):
        needed = real_code_required(user_id, otp, recent_mfa=recent_mfa)
        calls.append(needed)
        if len(calls) == 2:  # the look under the lock: alice sets up her factor now, on another worker
            def confirm():
                with other_workers(database_uri) as (other,):
                    with other.app_context():
                        confirmed["codes"] = set_up()
            threads.append(in_thread(confirmed, "thread", confirm))
            if database_uri.startswith("postgresql"):  # to its end, or until it waits for our lock
                wait_until(lambda: not threads[0].is_alive() or lock_waiters(app) > 0, timeout=60)
        return needed

    monkeypatch.setattr(module.mfa, "code_required", confirm_after_the_second_look)
    with app.app_context():
        try:
            if change == "address":
                verification.request_email_change(alice, "mallory@example.org", ALICE_PASSWORD)
            else:
                accounts.change_password(alice, ALICE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
        except SecondFactorRequired:  # the factor first: refused
            pass
        db.session.rollback()
        threads[0].join(60)
        assert len(confirmed.get("codes") or []) > 0, confirmed
        user = db.session.get(User, alice)
        assert (user.email, user.pending_email) == ("alice@example.com", None)
        # the change and then the factor, or the factor and the change refused; never the factor,
        # then a change that asked no code committed after it
        events = [e.event for e in db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(
            (enabled, "password_changed", "email_change_requested"))).order_by(AuditEvent.id))]
        done = "email_change_requested" if change == "address" else "password_changed"
        assert events in ([done, enabled], [enabled]), events
        assert (user.password_version == version) == (events == [enabled] or change == "address")


@pytest.mark.parametrize("page", ["password", "email"])
def test_a_page_refused_for_a_first_factor_set_up_meanwhile_asks_for_its_code(app, seeded, client, mail, database_uri,
                                                                              monkeypatch, step_clock, page):
    """The password and address pages, refused because alice set up her authenticator app while
    the change was being checked (e990cea, 3ebf163), built their message for the factor as they
    had found it before: none. The answer was a 403 with the same form, no message and no code
    field; it asks for the code, as the page does for a user who had the app already."""
    assert AuthActions(client).login().status_code == 302
    form_page = client.get(f"/account/{page}")
    token = csrf_token(form_page.get_data(as_text=True))
    assert 'name="otp"' not in form_page.get_data(as_text=True) and 'name="change-otp"' not in form_page.get_data(as_text=True)
    happened = app_set_up_after_the_password_check(accounts if page == "password" else verification, database_uri,
                                                   monkeypatch)
    if page == "password":
        response = client.post("/account/password", data={"csrf_token": token, "current_password": ALICE_PASSWORD,
                                                         "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
        field = 'name="otp"'
    else:
        response = client.post("/account/email", data={"change-csrf_token": token, "change-email": "alice@example.org",
                                                       "change-current_password": ALICE_PASSWORD})
        field = 'name="change-otp"'
    body = response.get_data(as_text=True)
    assert happened and response.status_code == 403, body[-800:]
    assert NEEDS_CODE in body and field in body, body[-1500:]


@pytest.mark.parametrize("page", ["password", "email"])
def test_a_page_refused_for_a_factor_removed_since_says_to_try_again(app, seeded, client, mail, database_uri,
                                                                     monkeypatch, step_clock, page):
    """The converse: alice's change is refused for want of her app's code, and the app is removed
    (her other browser, or `users mfa-reset`) before the page builds its answer. The page, asking
    which factor the account needs now, found none, and answered a 403 with no message at all."""
    assert AuthActions(client).login().status_code == 302
    enrol_user(app, "alice")  # after the sign-in: this session did not use it
    form_page = client.get(f"/account/{page}")
    assert ('name="otp"' if page == "password" else 'name="change-otp"') in form_page.get_data(as_text=True)
    token = csrf_token(form_page.get_data(as_text=True))
    module = accounts if page == "password" else verification
    real_code_required, removed = module.mfa.code_required, []

    def refused_then_removed(user_id, otp, *, recent_mfa):
        try:
            return real_code_required(user_id, otp, recent_mfa=recent_mfa)
        except SecondFactorRequired:
            with other_workers(database_uri) as (other,), other.app_context():
                removed.append(mfa.reset_factors(user_id))
            raise

    monkeypatch.setattr(module.mfa, "code_required", refused_then_removed)
    if page == "password":
        response = client.post("/account/password", data={"csrf_token": token, "current_password": ALICE_PASSWORD,
                                                         "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    else:
        response = client.post("/account/email", data={"change-csrf_token": token, "change-email": "alice@example.org",
                                                       "change-current_password": ALICE_PASSWORD})
    body = response.get_data(as_text=True)
    assert removed == [True] and response.status_code == 403, body[-800:]
    assert FACTORS_CHANGED in body, body[-1500:]

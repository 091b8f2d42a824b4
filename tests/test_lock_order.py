"""The writes of one user's requests take that user's row first, then the rows of the user's
codes: two requests that both spend a code of the same user (a sign-in's second step, a password
or address change, a factor's removal) then queue one behind the other. Taken the other way
round by one of them, PostgreSQL finds the two waiting for each other and aborts one, whose user
is answered "database unavailable". Each test meets the two at the point where they would have
crossed (tests/races.py), never by timing. PostgreSQL only: on SQLite a writing transaction holds
the database's one write lock, so two never wait for each other's rows."""

import json

import pytest
from sqlalchemy import select

from actions import OAuthActions
from conftest import ALICE_PASSWORD, postgresql_only
from identity.extensions import db
from identity.models import AuditEvent, Client, Consent, RecoveryCode, RefreshToken, TotpFactor, User
from identity.services import accounts, clients, consent, mfa, passkeys, verification
from identity.services.browser_sessions import SessionUser
from mfa_actions import code_at, enrol_user, password_step, second_step, step_clock  # noqa: F401  (the fixture)
from races import amid_the_first_unless_queued, in_own_context, mobile_code, other_workers
from webauthn_keys import SoftKey

pytestmark = postgresql_only()

NEW_PASSWORD = "a-long-new-passphrase-here"
PASSKEY_ISSUER, PASSKEY_RP_ID = "https://id.example.com", "id.example.com"


def _change_password(user_id: int, code: str):
    return accounts.change_password(user_id, ALICE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD, otp=code)


def _change_address(user_id: int, code: str):
    return verification.request_email_change(user_id, "alice@example.org", ALICE_PASSWORD, otp=code)


@pytest.mark.parametrize("change", [_change_password, _change_address], ids=["password", "address"])
def test_a_change_with_a_code_and_a_second_step_at_the_same_moment_both_get_an_answer(
        app, seeded, database_uri, step_clock, change):
    """alice finishes signing in on her phone (the second step, a code from her app) at the moment
    her laptop changes her password, or her address, with the next code: each spends a code of the
    same app. The second step spent its code, then waited for her row, which the change held
    while it waited for the code's row: on PostgreSQL one of the two was aborted and answered 503
    "database unavailable"."""
    secret, _ = enrol_user(app)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    changed = {}
    with other_workers(database_uri) as (phone,):
        browser = phone.test_client()
        assert "/account/login/mfa" in password_step(browser).headers["Location"]
        laptop = in_own_context(app, lambda: change(alice, code_at(secret, 1)), changed)
        with phone.app_context(), amid_the_first_unless_queued(phone, "UPDATE totp_factors", laptop) as started:
            step = second_step(browser, code_at(secret))
    assert started
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == alice)
                                    .order_by(AuditEvent.id)).all()
        db.session.rollback()
    # the second step went through, and the change, queued behind it, too
    outcome = changed["done"]
    assert not isinstance(outcome, Exception), repr(outcome)
    assert step.status_code == 302, step.get_data(as_text=True)
    assert "sign_in" in events and "mfa_failed" not in events, events
    assert ("password_changed" if change is _change_password else "email_change_requested") in events, events


def _new_recovery_codes(user_id: int, code: str):
    """The account page's "New recovery codes", proven with a code (no recent sign-in with the factor)."""
    mfa.prove_second_factor(user_id, code, recent_mfa=False, purpose="regenerate_codes")
    return mfa.regenerate_recovery_codes(user_id)


def test_new_recovery_codes_asked_with_a_code_as_a_second_step_finishes_both_get_an_answer(
        app, seeded, database_uri, step_clock):
    """alice asks for new recovery codes on her laptop, proving it with a code from her app, as her
    phone finishes signing in with the next one. The page spent its code, then wrote her row (her
    lockout count), which the second step had taken before its own code: on PostgreSQL one of
    the two was aborted and answered 503 "database unavailable"."""
    secret, _ = enrol_user(app)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    with other_workers(database_uri) as (phone,):
        browser = phone.test_client()
        assert "/account/login/mfa" in password_step(browser).headers["Location"]
        finished = {}

        def finish_sign_in():  # the phone, right after the page has spent its code
            finished["second step"] = second_step(browser, code_at(secret, 1))

        with app.app_context():
            with amid_the_first_unless_queued(app, "UPDATE totp_factors", finish_sign_in) as started:
                codes = _new_recovery_codes(alice, code_at(secret))
            assert started
            events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == alice)
                                        .order_by(AuditEvent.id)).all()
            db.session.rollback()
    assert len(codes) == 10
    step = finished["second step"]
    assert step.status_code == 302, step.get_data(as_text=True)
    assert "recovery_codes_regenerated" in events and "sign_in" in events and "mfa_failed" not in events, events


def _amid_an_operators_command(app, database_uri, statement_part: str, command, call):
    """What `call` returned (or the exception it raised), and what an operator's `command`, run on
    another worker right after `call` made its first statement naming `statement_part` (queued,
    if it must wait), returned (or raised)."""
    done = {}
    with other_workers(database_uri) as (operator,), app.app_context():
        with amid_the_first_unless_queued(app, statement_part, in_own_context(operator, command, done)) as started:
            outcome = _outcome(call)
        db.session.rollback()
        assert started
    return outcome, done["done"]


def _outcome(call):
    """What `call` returned, or the exception it raised (reported by the test's assertion)."""
    try:
        return call()
    except Exception as err:  # reported to the test
        return err


def test_an_operator_mfa_reset_as_new_recovery_codes_are_made_leaves_none(app, seeded, runner, database_uri,
                                                                          step_clock):
    """An operator runs `users mfa-reset alice` (she lost her phone) at the moment a session of hers
    that used the app minutes ago asks for new recovery codes. The reset took no lock of hers: it
    removed the app and the codes it saw, and the ten new codes, written after, stayed, without
    the app they belong to: codes that no page lists and that no sign-in asks for, but that still
    stood for her second factor wherever a code is taken."""
    enrol_user(app)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    codes, reset = _amid_an_operators_command(app, database_uri, "INSERT INTO recovery_codes",
                                              lambda: mfa.reset_factors(alice), lambda: mfa.regenerate_recovery_codes(alice))
    assert (len(codes), reset) == (10, True), (codes, reset)
    with app.app_context():
        left = db.session.scalars(select(RecoveryCode.id).where(RecoveryCode.user_id == alice)).all()
        app_left = db.session.scalars(select(TotpFactor.user_id).where(TotpFactor.user_id == alice)).all()
        db.session.rollback()
    assert (app_left, left) == ([], [])


def test_an_operator_mfa_reset_as_a_passkey_finishes_a_sign_in_both_get_an_answer(app, seeded, database_uri):
    """An operator runs `users mfa-reset alice` at the moment she finishes signing in with her
    passkey (the second step). The step had recorded the passkey's use, then waited for her row
    (her lockout count), which the reset held while it waited to remove the passkey: on
    PostgreSQL one of the two was aborted, a 503 for her or a traceback for the operator."""
    key = SoftKey()
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        alice, person = user.id, SessionUser.of(user)
        ceremony = passkeys.registration_options(alice, PASSKEY_ISSUER)
        passkeys.register(alice, PASSKEY_ISSUER, ceremony.state,
                          key.registration(ceremony.state["challenge"], origin=PASSKEY_ISSUER, rp_id=PASSKEY_RP_ID))
        ceremony = passkeys.authentication_options(PASSKEY_ISSUER, alice)
        answer = key.assertion(ceremony.state["challenge"], origin=PASSKEY_ISSUER, rp_id=PASSKEY_RP_ID)
        db.session.rollback()
    finished, reset = _amid_an_operators_command(
        app, database_uri, "UPDATE passkeys", lambda: mfa.reset_factors(alice),
        lambda: passkeys.finish_sign_in(PASSKEY_ISSUER, ceremony.state, answer, person, pending_id="a-pending-id"))
    assert reset is True, repr(reset)
    assert not isinstance(finished, Exception), repr(finished)
    assert finished[1].user is not None and finished[1].sid
    with app.app_context():
        assert passkeys.list_passkeys(alice) == []
        db.session.rollback()


def _mobile_app_granted(app, client) -> int:
    """alice's id, once she has used the phone's app: a code redeemed (a refresh token), and her
    "Allow" remembered (a consent)."""
    tokens = OAuthActions(client).token("mobile-pkce", **mobile_code(client, "openid offline_access"))
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        consent.remember_consent(alice, "mobile-pkce", ["openid", "offline_access"])
    return alice


def test_an_app_revoked_by_its_user_as_the_operator_removes_it_both_get_an_answer(app, seeded, client, database_uri):
    """alice revokes an app on her connected apps page at the moment an operator runs `clients
    remove` for it. The revocation deleted her consent, then revoked her codes and refresh tokens
    there; the removal deleted the app's codes and refresh tokens, then its consents. Each held
    rows the other waited for: on PostgreSQL one of the two was aborted, a 503 "database
    unavailable" for her or a traceback for the operator."""
    alice = _mobile_app_granted(app, client)
    revoked, removed = _amid_an_operators_command(
        app, database_uri, "DELETE FROM consents", lambda: clients.remove_client("mobile-pkce"),
        lambda: consent.revoke_grant(alice, "mobile-pkce"))
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.client_id == "mobile-pkce")
                                    .order_by(AuditEvent.id)).all()
        left = (db.session.scalar(select(Client.id).where(Client.client_id == "mobile-pkce")),
                db.session.scalars(select(Consent.id).where(Consent.client_id == "mobile-pkce")).all(),
                db.session.scalars(select(RefreshToken.id).where(RefreshToken.client_id == "mobile-pkce")).all())
        db.session.rollback()
    # her revocation went through, and the removal, queued behind it, too
    assert revoked is None, repr(revoked)
    assert removed is None, repr(removed)
    assert events[-2:] == ["consent_revoked", "client_removed"], events
    assert left == (None, [], [])


def test_a_passkey_sign_in_as_the_operator_removes_its_user_both_get_an_answer(app, seeded, database_uri):
    """alice signs in with her passkey alone at the moment an operator runs `users remove alice`.
    The sign-in recorded the passkey's use (its row), then spent the ceremony's challenge and stored
    the session, rows that refer to her user's row; the removal had locked that row for its DELETE
    and waited, in the cascade, for the passkey's: on PostgreSQL one of the two was aborted, a 503
    "database unavailable" for her or a traceback for the operator."""
    key = SoftKey()
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        alice, subject = user.id, user.subject
        ceremony = passkeys.registration_options(alice, PASSKEY_ISSUER)
        passkeys.register(alice, PASSKEY_ISSUER, ceremony.state,
                          key.registration(ceremony.state["challenge"], origin=PASSKEY_ISSUER, rp_id=PASSKEY_RP_ID))
        ceremony = passkeys.authentication_options(PASSKEY_ISSUER)
        answer = key.assertion(ceremony.state["challenge"], origin=PASSKEY_ISSUER, rp_id=PASSKEY_RP_ID,
                               user_handle=subject.encode())
        db.session.rollback()
    signed_in, removed = _amid_an_operators_command(
        app, database_uri, "UPDATE passkeys", lambda: accounts.remove_user("alice"),
        lambda: passkeys.sign_in(PASSKEY_ISSUER, ceremony.state, answer))
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == alice)
                                    .order_by(AuditEvent.id)).all()
        left = db.session.scalar(select(User.id).where(User.id == alice))
        db.session.rollback()
    # her sign-in went through, and the removal, queued behind it, too (the session went with her)
    assert not isinstance(signed_in, Exception), repr(signed_in)
    assert signed_in[1].user is not None and signed_in[1].sid
    assert removed is None, repr(removed)
    assert events[-2:] == ["sign_in", "user_removed"], events
    assert left is None


def test_an_app_revoked_by_its_user_as_the_operator_removes_her_both_get_an_answer(app, seeded, database_uri):
    """alice revokes an app on her connected apps page at the moment an operator runs `users remove
    alice`, while a sign-in of hers at the app has a code not yet redeemed. The revocation deleted
    her consent, then ended her codes there; the removal locked her row and deleted it, and its
    cascade, which reaches the codes before the consents, waited for her consent's row: on
    PostgreSQL one of the two was aborted, a 503 "database unavailable" for her or a traceback
    for the operator."""
    from identity.services import issued_grants

    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        consent.remember_consent(alice, "spa", ["openid"])  # "Allow", remembered
        issued_grants.save_authorization_code(  # her next sign-in there, its code on its way to the app
            "a-code-not-yet-redeemed", client_id="spa", user_id=alice, session_id=None,
            redirect_uri="http://127.0.0.1:8080/callback", response_type="code", scope="openid", nonce=None,
            code_challenge=None, code_challenge_method=None, auth_time=0)
        db.session.rollback()
    revoked, removed = _amid_an_operators_command(
        app, database_uri, "DELETE FROM consents", lambda: accounts.remove_user("alice"),
        lambda: consent.revoke_grant(alice, "spa"))
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.user_id == alice)
                                    .order_by(AuditEvent.id)).all()
        left = db.session.scalar(select(User.id).where(User.id == alice))
        db.session.rollback()
    # her revocation went through, and the removal, queued behind it, too
    assert revoked is None, repr(revoked)
    assert removed is None, repr(removed)
    assert events[-2:] == ["consent_revoked", "user_removed"], events
    assert left is None


def test_a_code_redeemed_as_the_operator_removes_its_user_both_get_an_answer(app, seeded, client, database_uri):
    """An app redeems alice's code (its refresh token among the tokens) at the moment an operator
    runs `users remove alice`. The redemption consumed the code (its row), then stored the refresh
    token, a row that refers to her user's row; the removal had deleted that row and waited, in
    the cascade, for the code's: on PostgreSQL one of the two was aborted, a 503 "database
    unavailable" for the app or a traceback for the operator."""
    form = mobile_code(client, "openid offline_access")
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.rollback()
    redeemed, removed = _amid_an_operators_command(
        app, database_uri, "UPDATE authorization_codes", lambda: accounts.remove_user("alice"),
        lambda: OAuthActions(app.test_client()).token("mobile-pkce", **form))
    with app.app_context():
        left = (db.session.scalar(select(User.id).where(User.id == alice)),
                db.session.scalars(select(RefreshToken.id).where(RefreshToken.user_id == alice)).all())
        db.session.rollback()
    # the redemption went through, and the removal, queued behind it, took its refresh token too
    assert redeemed.status_code == 200, redeemed.get_data(as_text=True)
    assert removed is None, repr(removed)
    assert left == (None, [])


def test_a_scheduled_key_made_as_the_operator_rotates_at_once_both_get_an_answer(app, seeded, database_uri,
                                                                                   monkeypatch):
    """The current keys are due a successor, and the first request to sign makes it, at the moment
    an operator runs `keys rotate --now` (a key thought compromised). The request inserted the
    successor, then retired its predecessor; the rotation revoked every key of the algorithm, the
    predecessor among them, then inserted a key of the same generation, which waited for the
    request's. Each held what the other waited for: on PostgreSQL one of the two was aborted, a
    503 "database unavailable" for the request or a traceback for the operator."""
    from identity.models import SigningKey
    from identity.services import keys

    with app.app_context():
        keys.signing_key("ES256")  # the first keys
        db.session.rollback()
    stamp = keys.now
    monkeypatch.setattr(keys, "now", lambda: stamp() + app.config["SIGNING_KEY_ROTATION_SECONDS"])  # due
    signing, rotated = _amid_an_operators_command(
        app, database_uri, "INSERT INTO signing_keys", lambda: keys.rotate(["ES256"], immediate=True),
        lambda: keys.signing_key("ES256"))
    with app.app_context():
        live = db.session.execute(select(SigningKey.generation, SigningKey.revoked_at)
                                  .where(SigningKey.alg == "ES256").order_by(SigningKey.generation)).all()
        db.session.rollback()
    # the request signed, and the rotation, queued behind it, revoked every key the request had
    # made or found too: one key of the algorithm is left unrevoked, the newest
    assert not isinstance(signing, Exception), repr(signing)
    assert not isinstance(rotated, Exception), repr(rotated)
    assert [revoked is None for _, revoked in live] == [False] * (len(live) - 1) + [True], live


def test_an_app_and_one_of_its_users_removed_at_the_same_moment_both_go(app, seeded, client, database_uri):
    """One operator runs `clients remove mobile-pkce` as another runs `users remove alice`, who
    used the app (a code redeemed, a refresh token, a consent). The app's removal deleted its
    consents, then its codes; the user's removal deleted her codes (and refresh tokens), then, in
    the cascade, her consents. Each held rows the other waited for: on PostgreSQL one of the two
    commands was aborted with a traceback."""
    alice = _mobile_app_granted(app, client)
    gone, removed = _amid_an_operators_command(
        app, database_uri, "DELETE FROM consents", lambda: accounts.remove_user("alice"),
        lambda: clients.remove_client("mobile-pkce"))
    with app.app_context():
        left = (db.session.scalar(select(Client.id).where(Client.client_id == "mobile-pkce")),
                db.session.scalar(select(User.id).where(User.id == alice)),
                db.session.scalars(select(Consent.id)).all(), db.session.scalars(select(RefreshToken.id)).all())
        db.session.rollback()
    assert gone is None, repr(gone)
    assert removed is None, repr(removed)
    assert left == (None, None, [], [])


def test_a_seed_making_an_app_public_as_the_operator_removes_one_of_its_users_both_go(app, seeded, database_uri):
    """An operator seeds a file that makes the `mobile` app public (no secret any more) and lists
    alice, unchanged, at the moment another operator runs `users remove alice`, who has a sign-in
    at that app whose code is not yet redeemed. The seed ended the app's codes (alice's among them)
    and then took alice's row; the removal held her row and waited for her code's: on PostgreSQL
    one of the two was aborted ("database error", nothing seeded, or a traceback)."""
    from identity.services import issued_grants
    from identity.services.seed import apply_seed, load_seed

    mobile = next(c for c in seeded["clients"] if c["client_id"] == "mobile")
    listed_alice = next(u for u in seeded["users"] if u["username"] == "alice")
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == "alice"))
        issued_grants.save_authorization_code(  # her sign-in at the app, its code on its way to it
            "a-code-not-yet-redeemed", client_id="mobile", user_id=alice, session_id=None,
            redirect_uri="com.example.app:/callback", response_type="code", scope="openid", nonce=None,
            code_challenge=None, code_challenge_method=None, auth_time=0)
        db.session.rollback()
    seed = json.dumps({"clients": [{**mobile, "client_secrets": []}], "users": [listed_alice]})
    seeded_now, removed = _amid_an_operators_command(
        app, database_uri, "UPDATE authorization_codes", lambda: accounts.remove_user("alice"),
        lambda: apply_seed(load_seed(seed)))
    assert not isinstance(seeded_now, Exception), repr(seeded_now)
    assert removed is None, repr(removed)
    with app.app_context():
        left = (db.session.scalar(select(User.id).where(User.id == alice)),
                db.session.scalar(select(Client.secret_hashes).where(Client.client_id == "mobile")))
        db.session.rollback()
    assert left == (None, [])

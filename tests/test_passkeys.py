"""Passkeys at the service: bound to the issuer's origin and RP id, one account per credential,
single-use short-lived challenges, and the sign count judged after the signature. Real
WebAuthn messages from a software authenticator (webauthn_keys.py), verified by py_webauthn."""

import pytest
from sqlalchemy import func, select

from identity import clock
from identity.errors import NotFound, PasskeyRefused
from identity.extensions import db
from identity.models import AuditEvent, Passkey, User, UserSession
from identity.services import accounts, mfa, passkeys
from identity.services.browser_sessions import SessionUser
from identity.store.browser_sessions import sid_digest
from webauthn_keys import UP, SoftKey, b64url

ISSUER = "https://id.example.com"
ORIGIN, RP_ID = "https://id.example.com", "id.example.com"
PASSWORD = "violet-anchor-meadow-482"


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


@pytest.fixture
def alice(ctx):
    return accounts.create_user("alice", PASSWORD, name="Alice").id


@pytest.fixture
def bob(ctx):
    return accounts.create_user("bob", PASSWORD, name="Bob").id


def register(user_id: int, key: SoftKey, *, origin=ORIGIN, rp_id=RP_ID, issuer=ISSUER, name="") -> Passkey:
    ceremony = passkeys.registration_options(user_id, issuer)
    return passkeys.register(user_id, issuer, ceremony.state,
                             key.registration(ceremony.state["challenge"], origin=origin, rp_id=rp_id), name)


def sign_in(key: SoftKey, *, origin=ORIGIN, rp_id=RP_ID, handle=None, **kwargs):
    ceremony = passkeys.authentication_options(ISSUER)
    return passkeys.sign_in(ISSUER, ceremony.state,
                            key.assertion(ceremony.state["challenge"], origin=origin, rp_id=rp_id,
                                          user_handle=handle, **kwargs))


def second_factor(user_id: int, key: SoftKey, **kwargs):
    ceremony = passkeys.authentication_options(ISSUER, user_id)
    return passkeys.authenticate(ISSUER, ceremony.state,
                                 key.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID, **kwargs),
                                 user_id=user_id)


def events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def test_register_and_sign_in_start_a_session_with_the_count_recorded(alice):
    key = SoftKey()
    passkey = register(alice, key, name="Laptop")
    assert (passkey.name, passkey.sign_count, passkey.backup_eligible) == ("Laptop", 0, False)
    use, result = sign_in(key)
    assert (use.user_id, use.method, use.user_verified) == (alice, "hwk", True)
    assert result.user.id == alice and result.sid
    assert db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.sid == sid_digest(result.sid))) == 1
    db.session.expire_all()
    assert db.session.get(Passkey, passkey.id).sign_count == 1
    assert [e.detail["method"] for e in events("sign_in")] == ["hwk"]


def test_a_backup_eligible_passkey_is_a_software_key(alice):
    key = SoftKey(backup_eligible=True)
    assert register(alice, key).backup_eligible is True
    assert sign_in(key)[0].method == "swk"


def test_the_options_exclude_registered_passkeys_and_name_the_rp(alice):
    key = SoftKey()
    register(alice, key)
    options = passkeys.registration_options(alice, ISSUER).options
    assert '"id": "id.example.com"' in options
    assert b64url(key.credential_id) in options


@pytest.mark.parametrize("origin, rp_id", [
    ("https://evil.example", RP_ID),  # another site's page
    (ORIGIN, "evil.example"),  # a key scoped to another RP id
    ("http://id.example.com", RP_ID),  # the right host without TLS
    ("https://id.example.com:8443", RP_ID),  # another port is another origin
])
def test_a_passkey_made_for_another_origin_or_rp_id_is_not_registered(alice, origin, rp_id):
    with pytest.raises(PasskeyRefused):
        register(alice, SoftKey(), origin=origin, rp_id=rp_id)
    assert passkeys.list_passkeys(alice) == []
    assert len(events("passkey_registration_failed")) == 1


@pytest.mark.parametrize("origin, rp_id", [("https://evil.example", RP_ID), (ORIGIN, "evil.example")])
def test_an_assertion_for_another_origin_or_rp_id_is_refused(alice, origin, rp_id):
    key = SoftKey()
    register(alice, key)
    with pytest.raises(PasskeyRefused):
        sign_in(key, origin=origin, rp_id=rp_id)
    assert db.session.scalar(select(func.count()).select_from(UserSession)) == 0
    assert len(events("passkey_sign_in_failed")) == 1


def test_a_credential_id_registered_to_another_user_is_refused(alice, bob):
    key = SoftKey()
    register(alice, key)
    with pytest.raises(PasskeyRefused, match="already registered"):
        register(bob, key)
    assert passkeys.list_passkeys(bob) == []
    [refused] = events("passkey_registration_failed")
    assert refused.user_id == bob and refused.detail["other_user"] is True


def test_another_users_passkey_is_not_a_second_factor(alice, bob):
    key = SoftKey()
    register(bob, key)
    with pytest.raises(PasskeyRefused):
        second_factor(alice, key)
    assert second_factor(bob, key).user_id == bob


def test_a_user_handle_that_is_not_the_owners_is_refused(alice, bob):
    key = SoftKey()
    register(alice, key)
    with pytest.raises(PasskeyRefused):
        sign_in(key, handle=db.session.get(User, bob).subject.encode())
    assert sign_in(key, handle=db.session.get(User, alice).subject.encode())[0].user_id == alice


def test_passwordless_sign_in_needs_user_verification_the_second_factor_does_not(alice):
    key = SoftKey()
    register(alice, key)
    with pytest.raises(PasskeyRefused):
        sign_in(key, flags=UP)
    use = second_factor(alice, key, flags=UP)
    assert use.user_verified is False


def test_a_stale_sign_count_is_a_clone_refused_and_audited(alice):
    key = SoftKey()
    passkey_id = register(alice, key).id
    sign_in(key, count_step=5)  # the original: 5
    clone = SoftKey()
    clone.private, clone.credential_id, clone.sign_count = key.private, key.credential_id, 2
    with pytest.raises(PasskeyRefused, match="copied"):
        sign_in(clone)  # 3, behind the original's 5
    with pytest.raises(PasskeyRefused, match="copied"):
        sign_in(clone, count_step=0)  # 3 again: not greater either
    alarms = events("passkey_clone_detected")
    assert [(a.detail["stored_count"], a.detail["presented_count"]) for a in alarms] == [(5, 3), (5, 3)]
    db.session.expire_all()
    assert db.session.get(Passkey, passkey_id).sign_count == 5
    assert sign_in(key)[0].user_id == alice  # the original, at 6, still works


def test_an_authenticator_without_a_counter_keeps_signing_in(alice):
    key = SoftKey()
    register(alice, key)
    for _ in range(3):
        assert sign_in(key, count_step=0)[0].user_id == alice


def test_a_forged_signature_is_not_judged_a_clone(alice):
    key = SoftKey()
    register(alice, key)
    sign_in(key, count_step=5)
    forger = SoftKey()
    forger.credential_id = key.credential_id  # the id is public; the key is not
    with pytest.raises(PasskeyRefused):
        sign_in(forger)
    assert events("passkey_clone_detected") == []


def test_a_challenge_serves_one_ceremony_and_expires(alice, monkeypatch):
    key = SoftKey()
    register(alice, key)
    ceremony = passkeys.authentication_options(ISSUER)
    answer = key.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID)
    with pytest.raises(PasskeyRefused, match="expired"):
        passkeys.sign_in(ISSUER, None, answer)  # the web layer pops the state: a second answer finds none
    with pytest.raises(PasskeyRefused, match="expired"):  # a registration's state is not a sign-in's
        passkeys.sign_in(ISSUER, passkeys.registration_options(alice, ISSUER).state, answer)
    later = clock.now() + passkeys.CHALLENGE_SECONDS + 1
    monkeypatch.setattr(passkeys, "now", lambda: later)
    with pytest.raises(PasskeyRefused, match="expired"):
        passkeys.sign_in(ISSUER, ceremony.state, answer)


def test_an_assertion_for_another_challenge_is_refused(alice):
    key = SoftKey()
    register(alice, key)
    ceremony = passkeys.authentication_options(ISSUER)
    other = passkeys.authentication_options(ISSUER)
    with pytest.raises(PasskeyRefused):
        passkeys.sign_in(ISSUER, ceremony.state, key.assertion(other.state["challenge"], origin=ORIGIN, rp_id=RP_ID))


def test_remove_only_ones_own_passkey(alice, bob):
    passkey_id = register(alice, SoftKey()).id
    with pytest.raises(NotFound):
        passkeys.remove_passkey(bob, passkey_id)
    passkeys.remove_passkey(alice, passkey_id)
    assert passkeys.list_passkeys(alice) == []
    assert len(events("passkey_removed")) == 1


@pytest.mark.parametrize("answer", ["", "{}", "not json", '{"id": "x", "rawId": "x", "type": "public-key", "response": {}}',
                                    "x" * (passkeys.MAX_CREDENTIAL_JSON + 1)])
def test_malformed_answers_are_refused(alice, answer):
    ceremony = passkeys.authentication_options(ISSUER)
    with pytest.raises(PasskeyRefused):
        passkeys.sign_in(ISSUER, ceremony.state, answer)
    ceremony = passkeys.registration_options(alice, ISSUER)
    with pytest.raises(PasskeyRefused):
        passkeys.register(alice, ISSUER, ceremony.state, answer)


def test_a_passkey_is_a_second_factor(alice):
    assert not mfa.has_second_factor(alice)
    passkey_id = register(alice, SoftKey()).id
    assert mfa.has_second_factor(alice) and not mfa.has_totp(alice)
    assert mfa.user_factors(alice).passkeys == 1 and mfa.user_factors(alice).any
    passkeys.remove_passkey(alice, passkey_id)
    assert not mfa.has_second_factor(alice)


def test_the_operators_reset_removes_passkeys(alice):
    register(alice, SoftKey())
    assert mfa.reset_factors(alice) is True
    assert passkeys.list_passkeys(alice) == [] and not mfa.has_second_factor(alice)


def test_the_second_step_with_a_passkey_resets_the_lockout_count(alice):
    key = SoftKey()
    register(alice, key)
    user = db.session.get(User, alice)
    user.failed_attempts = 3
    db.session.commit()
    ceremony = passkeys.authentication_options(ISSUER, alice)
    answer = key.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID)
    person = SessionUser(alice, user.subject, user.username, user.name, user.email, user.password_version,
                         user.email_verified)
    use, result = passkeys.finish_sign_in(ISSUER, ceremony.state, answer, person, pending_id="a-pending-id")
    assert result.amr == "pwd hwk mfa" and result.sid
    db.session.expire_all()
    assert db.session.get(User, alice).failed_attempts == 0


def test_a_lock_set_by_a_refused_second_step_passkey_is_audited_and_counted(app, alice):
    """Like a wrong code (mfa.check_code), a refused passkey at the second step counts toward the
    lockout; the one that reached the limit set the lock, but left no account_locked event and
    no count in identity_lockouts_total, as every other lock does."""
    from identity.services import metrics

    app.config["LOCKOUT_MAX_FAILURES"] = 2
    key, stranger = SoftKey(), SoftKey()
    register(alice, key)
    user = db.session.get(User, alice)
    person = SessionUser(alice, user.subject, user.username, user.name, user.email, user.password_version,
                         user.email_verified)
    locks = metrics.REGISTRY.get_sample_value("identity_lockouts_total") or 0.0
    for _ in range(2):
        ceremony = passkeys.authentication_options(ISSUER, alice)
        answer = stranger.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID)
        with pytest.raises(PasskeyRefused):
            passkeys.finish_sign_in(ISSUER, ceremony.state, answer, person, pending_id="a-pending-id")
    db.session.expire_all()
    assert db.session.get(User, alice).locked_until > clock.now()
    assert [e.user_id for e in events("account_locked")] == [alice]
    assert (metrics.REGISTRY.get_sample_value("identity_lockouts_total") or 0.0) == locks + 1


def test_a_disabled_user_cannot_sign_in_with_a_passkey(alice):
    from identity.services import user_status

    key = SoftKey()
    passkey = register(alice, key)
    user_status.disable_user("alice")
    with pytest.raises(PasskeyRefused):
        sign_in(key)
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == alice)) == 0
    assert db.session.get(Passkey, passkey.id).sign_count == 0  # the refused use is not recorded


def test_a_disabled_users_passkey_sign_in_is_audited(alice):
    """A password sign-in of a disabled user is audited (sign_in_failed, reason disabled); the
    passkey's was refused with nothing in the log."""
    from identity.services import user_status

    key = SoftKey()
    register(alice, key)
    user_status.disable_user("alice")
    with pytest.raises(PasskeyRefused):
        sign_in(key)
    db.session.expire_all()
    assert [(e.user_id, e.detail["reason"]) for e in events("passkey_sign_in_failed")] == [(alice, "disabled")]
    assert events("passkey_used") == [] and events("sign_in") == []


def test_a_passkey_use_rolled_back_is_no_success_in_the_metrics(alice):
    """identity_mfa_results_total counts a passkey's success once its use is kept (as a TOTP
    code's is, after the write that spends it): a disabled user's sign-in, rolled back, is none."""
    from identity.services import metrics, user_status

    def successes():
        return metrics.REGISTRY.get_sample_value("identity_mfa_results_total",
                                                 {"method": "webauthn", "result": "success"}) or 0.0

    key = SoftKey()
    register(alice, key)
    before = successes()
    sign_in(key)
    assert successes() == before + 1
    user_status.disable_user("alice")
    with pytest.raises(PasskeyRefused):
        sign_in(key)
    assert successes() == before + 1

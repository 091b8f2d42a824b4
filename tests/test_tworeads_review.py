"""Review: two reads, two moments. One operation that judges by facts read in more than one
statement (or reads, then writes what it judged without a compare-and-set) may see another
transaction's commit in between: on PostgreSQL (READ COMMITTED) every statement sees what had
committed when it began, and on SQLite a read outside a transaction does too (the ORM session
begins one only at its first write, and FOR UPDATE is ignored there). Each test commits the other
change right after a given statement of the operation (tests/races.py: amid_the_first), or as it
calls a given service, so the interleaving is made by a hook, never by timing; the answer must be
one that the two, run one after the other in some order, would have given."""

import re
import threading

import pytest
from sqlalchemy import select, update

from actions import AuthActions, OAuthActions, redirect_params
from conftest import ALICE_PASSWORD, csrf_token
from identity.errors import PasskeyRefused
from identity.extensions import db
from identity.models import AuditEvent, Client, Consent, LogoutDelivery, TotpFactor, User
from identity.services import account_tokens, accounts, consent, mfa, passkeys, recovery, user_status, verification
from identity.services import mail as mail_service
from mfa_actions import SECRET_RE, code_at, post_mfa, step_clock  # noqa: F401  (the fixture)
from races import amid_the_first, amid_the_first_unless_queued, in_own_context, other_workers
from webauthn_keys import SoftKey

NEW_PASSWORD = "a-long-new-passphrase-here"
ISSUER, ORIGIN, RP_ID = "https://id.example.com", "https://id.example.com", "id.example.com"


def audited(*names: str) -> list[str]:
    """These audit events as recorded, oldest first."""
    return list(db.session.scalars(select(AuditEvent.event).where(AuditEvent.event.in_(names)).order_by(AuditEvent.id)))


def user_id(username: str) -> int:
    return db.session.scalar(select(User.id).where(User.username == username))


def test_a_password_change_between_a_links_read_and_its_use_keeps_the_address(app, seeded, mail):
    """Someone who has the password asks to move the account to their own address; the owner, told
    by mail that a new password keeps the address, changes it. On SQLite the link read the user
    (SQLite ignores FOR UPDATE, and the read began no transaction) and then used the token: a
    password change committed between the two ended the pending change unseen, and the link moved
    the account to the other address anyway, where reset links now go."""
    with app.app_context():
        alice = user_id("alice")
        verification.request_email_change(alice, "alice@example.org", ALICE_PASSWORD)
        token = re.search(r"token=([\w-]+)", mail.text(mail.wait_for(to="alice@example.org"))).group(1)
        db.session.remove()
        changed: dict = {}
        the_password_change = in_own_context(
            app, lambda: accounts.change_password(alice, ALICE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD).id, changed)
        with amid_the_first_unless_queued(app, "FROM users", the_password_change) as started:
            verification.verify_email(token)
        db.session.rollback()
        assert started and changed["done"] == alice
        order = audited("password_changed", "email_changed")
        email = db.session.scalar(select(User.email).where(User.id == alice))
        # the link first, then the change; or the change first, and the link applies nothing
        assert order in (["email_changed", "password_changed"], ["password_changed"])
        assert email == ("alice@example.org" if order[0] == "email_changed" else "alice@example.com")


def alice_with_a_passkey():
    """alice (a new user: her id and subject), her authenticator, and the id of the passkey it
    registered; the session is then left empty, as a request's own would be. Needs an app context."""
    user = accounts.create_user("alice", NEW_PASSWORD)
    alice, subject, key = user.id, user.subject, SoftKey()
    ceremony = passkeys.registration_options(alice, ISSUER)
    passkey_id = passkeys.register(alice, ISSUER, ceremony.state,
                                   key.registration(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID)).id
    db.session.remove()  # the sign-in's own session, as a request's: nothing of the above in it
    return alice, subject, key, passkey_id


def test_a_passkey_removed_while_it_signs_in_is_not_reported_as_a_copied_key(app):
    """The owner removes a passkey (or the operator runs `users mfa-reset`) while it signs in on
    another device. The sign-in read the passkey, then recorded its use by a conditional UPDATE
    of its row; the removal committed between the two, the UPDATE changed no row, and that was
    taken for a use counter gone backwards: the person was told their passkey had been copied,
    and the audit log got a `passkey_clone_detected` alarm for a key nobody copied."""
    with app.app_context():
        alice, _, key, passkey_id = alice_with_a_passkey()
        removed: dict = {}
        the_removal = in_own_context(app, lambda: passkeys.remove_passkey(alice, passkey_id), removed)
        ceremony = passkeys.authentication_options(ISSUER)
        answer = key.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID)
        with amid_the_first("FROM passkeys", the_removal) as started, pytest.raises(PasskeyRefused) as refused:
            passkeys.sign_in(ISSUER, ceremony.state, answer)
        db.session.rollback()
        assert started and "done" in removed and removed["done"] is None
        assert str(refused.value) == passkeys.NOT_VERIFIED
        assert audited("passkey_clone_detected", "passkey_sign_in_failed") == ["passkey_sign_in_failed"]


def test_a_passkey_sign_in_while_its_user_is_removed_is_refused_not_a_500(app):
    """`users remove alice` while Alice signs in with her passkey alone (the browser sends the
    passkey's user handle). The sign-in read the passkey, then its user in another statement: the
    removal, committed between the two, left no user, and the sign-in ended in a 500 ('NoneType'
    object has no attribute 'subject') instead of the refusal a removed user's passkey gets."""
    with app.app_context():
        _, subject, key, _ = alice_with_a_passkey()
        removed: dict = {}
        the_removal = in_own_context(app, lambda: accounts.remove_user("alice"), removed)
        ceremony = passkeys.authentication_options(ISSUER)
        answer = key.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID, user_handle=subject.encode())
        with amid_the_first("FROM passkeys", the_removal) as started, pytest.raises(PasskeyRefused) as refused:
            passkeys.sign_in(ISSUER, ceremony.state, answer)
        db.session.rollback()
        assert started and "done" in removed and removed["done"] is None
        assert str(refused.value) == passkeys.NOT_VERIFIED
        assert audited("passkey_clone_detected", "passkey_sign_in_failed") == ["passkey_sign_in_failed"]


def test_consent_allowed_while_the_app_is_revoked_is_no_error(app, seeded):
    """"Allow" on a consent page in one tab while the same app is revoked on the connected apps
    page in another. Remembering the consent inserted its row unless there, then read it locked:
    on PostgreSQL the revocation, committed between the two, left nothing to read, and the
    "Allow" was answered 500 ('NoneType' object has no attribute 'scopes')."""
    with app.app_context():
        alice = user_id("alice")
        consent.remember_consent(alice, "spa", ["openid"])
        revoked: dict = {}
        the_revocation = in_own_context(app, lambda: consent.revoke_grant(alice, "spa"), revoked)
        with amid_the_first_unless_queued(app, "INSERT INTO consents", the_revocation) as started:
            consent.remember_consent(alice, "spa", ["openid", "profile"])
        db.session.rollback()
        assert started and "done" in revoked and revoked["done"] is None
        row = db.session.scalar(select(Consent).where(Consent.user_id == alice, Consent.client_id == "spa"))
        order = audited("consent_granted", "consent_revoked")
        # the revocation first, then "Allow" remembered anew; or "Allow" first, then the revocation
        assert order in (["consent_granted", "consent_revoked", "consent_granted"], ["consent_granted", "consent_granted", "consent_revoked"])
        assert (row.scopes if row is not None else None) == (["openid", "profile"] if order[-1] == "consent_granted" else None)


@pytest.mark.parametrize("switch", ["disable", "enable", "unlock"])
def test_a_switch_on_a_user_removed_meanwhile_says_no_such_user(app, runner, seeded, switch):
    """`users disable alice` while another operator's `users remove alice` runs. The switch found
    the user by name, then locked the row and read it again by the object it had found: the
    removal, committed between the two, left no row, and the command ended in SQLAlchemy's
    traceback ("Could not refresh instance") instead of "no user 'alice'", the answer when run
    after the removal."""
    with app.app_context():
        removed: dict = {}
        the_removal = in_own_context(app, lambda: accounts.remove_user("alice"), removed)
        with amid_the_first("users.username_normalized =", the_removal) as started:
            result = runner.invoke(args=["users", switch, "alice"])
        assert started and "done" in removed and removed["done"] is None
        assert (result.exit_code, result.output) == (1, "Error: no user 'alice'\n"), repr(result.exception)


@pytest.mark.parametrize("hooked", ["update", "remove"])
def test_a_scope_removed_while_a_client_is_given_it_is_not_left_allowed(app, seeded, hooked):
    """`clients update spa --scope ... reports` while another operator runs `scopes remove reports`
    (or the other way round). The update checked that the scope exists, the removal that no client
    allows it, each before its write: both committed, and the client was left allowed a scope that
    no longer existed, which a later `scopes add reports` would have granted it unasked. Either
    order must end as when the two ran one after the other: the scope kept and allowed (the
    removal refused), or removed and not allowed (the update refused)."""
    from identity.errors import Conflict, ValidationFailed
    from identity.models import ApiScope, Client
    from identity.services import clients, resources

    with app.app_context():
        resources.add_api_scope("reports")
        allowed = db.session.scalar(select(Client.allowed_scopes).where(Client.client_id == "spa"))
        db.session.commit()

        def update():
            return clients.update_client("spa", {"allowed_scopes": [*allowed, "reports"]})

        def remove():
            return resources.remove_api_scope("reports")

        hooked_call, other_call = (update, remove) if hooked == "update" else (remove, update)
        other: dict = {}
        with amid_the_first_unless_queued(app, "api_scopes" if hooked == "update" else "FROM clients",
                                          in_own_context(app, other_call, other)) as started:
            try:
                outcome = hooked_call()
            except (Conflict, ValidationFailed) as err:
                outcome = err
        db.session.rollback()
        assert started and "done" in other
        outcomes = {hooked: outcome, ("remove" if hooked == "update" else "update"): other["done"]}
        scope_kept = db.session.scalar(select(ApiScope.id).where(ApiScope.name == "reports")) is not None
        now_allowed = db.session.scalar(select(Client.allowed_scopes).where(Client.client_id == "spa"))
        assert ("reports" in now_allowed) == scope_kept, \
            f"scope kept: {scope_kept}, allowed: {now_allowed}, after {outcomes}"
        if scope_kept:
            assert outcomes["update"][0].client_id == "spa" and isinstance(outcomes["remove"], Conflict), outcomes
        else:
            assert outcomes["remove"] is None and isinstance(outcomes["update"], ValidationFailed), outcomes
            assert outcomes["update"].errors == {"allowed_scopes": ["unknown scope 'reports'"]}


def test_a_code_redeemed_while_the_password_changes_gets_its_client_told(app, client, flow_clients):
    """alice signs in at `web` (which registered a back-channel logout URI) and changes her
    password on the account page, in the same browser session, which the change keeps; in the
    meantime `web` redeems the code that session just gave it. The change read the user's live
    refresh-token families (to queue their clients' logout notices), then revoked every refresh
    token: on PostgreSQL the redemption, committed between the two, got its refresh token revoked
    but `web` was never told, and kept the signed-in state it had built on that code."""
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == "web").values(
            backchannel_logout_uri="https://web.example.com/backchannel"))
        db.session.commit()
    assert AuthActions(client).login().status_code == 302
    oauth = OAuthActions(client)
    code = redirect_params(oauth.authorize(client_id="web", scope="openid offline_access").headers["Location"])["code"]
    redeemed: dict = {}

    def web_redeems():
        with other_workers(app.config["SQLALCHEMY_DATABASE_URI"]) as (worker,):
            redeemed["done"] = OAuthActions(worker.test_client()).token(
                "web", grant_type="authorization_code", code=code, redirect_uri="https://web.example.com/cb")

    page = client.get("/account/password")
    with app.app_context(), amid_the_first_unless_queued(app, "refresh_tokens", web_redeems) as started:
        changed = client.post("/account/password", data={
            "csrf_token": csrf_token(page.get_data(as_text=True)), "current_password": ALICE_PASSWORD,
            "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert started and changed.status_code in (200, 302), changed.get_data(as_text=True)[:500]
    answer = redeemed["done"]
    with app.app_context():
        told = list(db.session.scalars(select(LogoutDelivery.client_id).where(LogoutDelivery.reason == "password_changed")))
        db.session.rollback()
    if answer.status_code == 200:  # redeemed before the change ended the code: its tokens end with the change
        refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=answer.get_json()["refresh_token"])
        assert refreshed.status_code == 400
        assert told == ["web"]
    else:  # the change ended the code first (SQLite: the redemption waits for the change's write lock)
        assert answer.get_json()["error"] == "invalid_grant"
        assert told == []


def test_a_reset_asked_for_as_the_operator_disables_the_user_mails_no_link(app, seeded, mail):
    """Someone asks for alice's reset link as the operator runs `users disable alice`. The reset
    read the user, then took the user's row lock and judged by what it had read: a disable
    committed between the two was not seen, and a reset link was mailed to a disabled account
    (refused when followed, but the mail said it would work)."""
    with app.app_context():
        disabled: dict = {}
        the_disable = in_own_context(app, lambda: user_status.disable_user("alice").changed, disabled)
        with amid_the_first_unless_queued(app, "FROM users", the_disable) as started:
            recovery.request_reset("alice")
        db.session.rollback()
        mail_service.wait_until_sent()
        assert started and disabled["done"] is True
        outcomes = [detail["outcome"] for detail in db.session.scalars(
            select(AuditEvent.detail).where(AuditEvent.event == "password_reset_requested"))]
        assert outcomes == ["disabled"]
        assert [message["Subject"] for message in mail.to("alice@example.com")] == []


def test_confirm_clicked_twice_at_once_says_the_app_is_set_up_already(app, client, seeded, step_clock, monkeypatch):
    """"Confirm" on the authenticator app's set-up, clicked twice. The second click checked that no
    app was set up yet, then whether the change needs a second factor: the first click's
    confirmation, committed between the two, made alice a user with an app, and the second answer
    was 403 "sign in again with your second factor" for a set-up that had just succeeded."""
    assert AuthActions(client).login().status_code == 302
    started_page = post_mfa(client, "start")
    secret = SECRET_RE.search(started_page.get_data(as_text=True)).group(1)
    page = client.get("/account/mfa")
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), "action": "confirm", "code": code_at(secret)}
    first: dict = {}
    proving = mfa.prove_second_factor

    def the_first_click_meanwhile(*args, **kwargs):  # the second click's check of the second factor
        if not first:
            first["started"] = True
            with other_workers(app.config["SQLALCHEMY_DATABASE_URI"]) as (worker,):
                tab = worker.test_client()
                for cookie in client._cookies.values():  # the same browser: the same cookies
                    tab.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
                first["done"] = tab.post("/account/mfa", data=form)
        return proving(*args, **kwargs)

    monkeypatch.setattr(mfa, "prove_second_factor", the_first_click_meanwhile)
    second = client.post("/account/mfa", data=form)
    assert first["done"].status_code == 200, first["done"].get_data(as_text=True)[-600:]
    assert second.status_code == 409, second.get_data(as_text=True)[-600:]
    assert "set up already" in second.get_data(as_text=True)
    with app.app_context():
        assert audited("mfa_enabled") == ["mfa_enabled"]
        assert db.session.scalar(select(TotpFactor.confirmed_at)) is not None


def test_a_link_sent_again_as_the_new_address_changes_goes_to_the_address_pending(app, seeded, mail):
    """alice asked to move her account to one address, then to another, as a "send the link again"
    of the first ran. The resend read the address awaiting a link, then took the user's row lock:
    the second request, committed between the two, was not seen, and the last link made was for
    the address no longer pending (refused when followed, but the mail said it would work), the
    pending address's own link superseded by it."""
    with app.app_context():
        alice = user_id("alice")
        verification.request_email_change(alice, "alice@example.org", ALICE_PASSWORD)
        mail_service.wait_until_sent()
        db.session.remove()
        changed: dict = {}
        the_second_change = in_own_context(
            app, lambda: verification.request_email_change(alice, "alice@example.net", ALICE_PASSWORD), changed)
        with amid_the_first_unless_queued(app, "FROM users", the_second_change) as started:
            verification.send_verification(alice)
        db.session.rollback()
        mail_service.wait_until_sent()
        assert started and "done" in changed and not isinstance(changed["done"], Exception), changed
        assert db.session.scalar(select(User.pending_email).where(User.id == alice)) == "alice@example.net"
        # the newest link is the live one (each supersedes the older): the pending address's. (The
        # order the two requests' mails leave in is the sender thread's, not their commits'.)
        assert account_tokens.newest(alice, account_tokens.VERIFY_EMAIL)[0] == "alice@example.net"
        linked = [message["X-Envelope-To"] for message in mail.messages
                  if message["X-Envelope-To"] in ("alice@example.org", "alice@example.net")]
        assert "alice@example.net" in linked, linked


def test_a_passkey_sign_in_whose_user_is_removed_as_it_commits_is_answered(app, monkeypatch):
    """`users remove alice` commits right after Alice's sign-in with her passkey alone has
    committed. The sign-in read her name and address for its answer after its commit, from a row
    the removal had deleted: a 500 (ObjectDeletedError) for a sign-in that had been stored (and
    then removed with her), where one a moment earlier was answered and one a moment later refused."""
    from identity.services import metrics

    with app.app_context():
        alice, subject, key, _ = alice_with_a_passkey()
        ceremony = passkeys.authentication_options(ISSUER)
        answer = key.assertion(ceremony.state["challenge"], origin=ORIGIN, rp_id=RP_ID, user_handle=subject.encode())
        removed: dict = {}
        counting = metrics.count_mfa

        def removed_after_the_commit(*args):  # the first thing the sign-in does after its commit
            if not removed:
                thread = threading.Thread(target=in_own_context(app, lambda: accounts.remove_user("alice"), removed))
                thread.start()
                thread.join(60)
            return counting(*args)

        monkeypatch.setattr(metrics, "count_mfa", removed_after_the_commit)
        _, result = passkeys.sign_in(ISSUER, ceremony.state, answer)
        db.session.rollback()
        assert "done" in removed and removed["done"] is None, removed
        assert (result.user.id, result.user.username) == (alice, "alice") and result.sid
        assert audited("sign_in", "user_removed") == ["sign_in", "user_removed"]

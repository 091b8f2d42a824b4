"""Security notices: after every password change (the page, the local API, a reset link, the
operator's command) the user gets a mail saying what happened, when and through which client,
with no link in it; a notice that cannot be sent changes nothing else."""

import pytest
from sqlalchemy import select

import mail_server
from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, User
from identity.services import accounts
from identity.services import mail as mail_service
from mfa_actions import step_clock  # noqa: F401  (fixture)
from test_localapi_support import NEW_PASSWORD, api  # noqa: F401  (fixture)

ALICE_MAIL = "alice@example.com"


def notice(app, mail):
    with app.app_context():
        assert mail_service.wait_until_sent()
    message = mail.wait_for(to=ALICE_MAIL)
    assert message["Subject"] == "Your Portcullis Identity password was changed"
    text = mail.text(message)
    assert mail.links(message) == [] and "href" not in mail.html(message)  # nothing that signs anyone in
    assert "(UTC)" in text
    return text


def test_a_change_on_the_page(app, client, seeded, mail):
    assert AuthActions(client).login().status_code == 302
    page = client.get("/account/password")
    changed = client.post("/account/password", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "current_password": ALICE_PASSWORD,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert changed.status_code == 200
    text = notice(app, mail)
    assert "by you, with your current password" in text and "from the address 127.0.0.1" in text
    assert "Alice Example" in text and '"alice"' in text


def test_a_change_through_the_local_api_names_the_client(app, api, mail):
    assert api.change_password(api.token(client_id="mobile")).status_code == 204
    text = notice(app, mail)
    assert "by you, with your current password (from Mobile App" in text


def test_a_change_by_the_operator(app, runner, seeded, mail):
    result = runner.invoke(args=["users", "set-password", "alice"], input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    # a command sends at once (the process may end when it returns): nothing to wait for
    assert "by an administrator" in mail.text(mail.wait_for(to=ALICE_MAIL, timeout=0.5))


def test_a_reset_by_the_seed_file(app, runner, seeded, mail, tmp_path):
    """`seed --reset-passwords` sets a password as `users set-password` does: the user is told."""
    import json

    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"users": [{"username": "alice", "email": ALICE_MAIL, "password": NEW_PASSWORD,
                                           "name": "Alice Example"}]}))
    result = runner.invoke(args=["seed", "--reset-passwords", str(path)])
    assert result.exit_code == 0 and "password reset" in result.output, result.output
    assert "by an administrator" in mail.text(mail.wait_for(to=ALICE_MAIL, timeout=0.5))
    again = runner.invoke(args=["seed", "--reset-passwords", str(path)])  # the same password: nothing changes
    assert again.exit_code == 0 and "password reset" not in again.output
    assert len([m for m in mail.messages if ALICE_MAIL in m["To"]]) == 1


def test_a_failed_change_sends_nothing(app, api, mail):
    assert api.change_password(api.token(), current="not-the-password-0000").status_code == 400
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert mail.messages == []


def test_a_user_without_an_address_gets_no_notice(app, runner, seeded, mail):
    with app.app_context():
        accounts.create_user("noemail", "amber-walnut-thistle-3390")
    assert runner.invoke(args=["users", "set-password", "noemail"], input=NEW_PASSWORD + "\n").exit_code == 0
    assert mail.messages == []


@pytest.mark.parametrize("app_config", [{"MAIL_PORT": mail_server.refusing_port()}])  # nothing listens there
def test_smtp_down_the_change_stands_and_the_failure_is_audited(app, api):
    assert api.change_password(api.token()).status_code == 204
    with app.app_context():
        assert mail_service.wait_until_sent()
        events = [(e.event, e.detail) for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert db.session.scalar(select(User.password_version).where(User.username == "alice")) == 2
    assert ("password_changed", {}) in events
    assert events[-1] == ("mail_failed", {"template": "password_changed", "reason": "ConnectionRefusedError"})


# --- a sign-in method added or removed ----------------------------------------------------------
# NIST SP 800-63B section 4.6 (6.1.2 in revision 3): the subscriber is told when an authenticator
# is bound to or removed from the account. Someone who signed in once as the user (a shared
# computer, a phished password) could add a passkey of their own, which signs in alone and
# outlives a password reset, and the owner was never told.

METHOD_SUBJECT = "A sign-in method of your Portcullis Identity account changed"


def method_notices(app, mail) -> list[str]:
    with app.app_context():
        assert mail_service.wait_until_sent()
    found = [m for m in mail.messages if ALICE_MAIL in m["To"] and m["Subject"] == METHOD_SUBJECT]
    for message in found:
        assert mail.links(message) == [] and "href" not in mail.html(message)
    return [mail.text(m) for m in found]


def test_an_authenticator_app_set_up_then_new_recovery_codes_then_removed(app, client, seeded, mail, step_clock):
    from mfa_actions import CLOCK, CODE_RE, code_at, enrol, post_mfa

    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol(client)
    texts = method_notices(app, mail)
    assert len(texts) == 1 and "An authenticator app was set up" in texts[0]
    assert "from the address 127.0.0.1" in texts[0] and "(UTC)" in texts[0]
    CLOCK.next_step()
    regenerated = post_mfa(client, "regenerate", otp=code_at(secret))
    assert regenerated.status_code == 200
    CLOCK.next_step()
    new_codes = CODE_RE.findall(regenerated.get_data(as_text=True))
    assert post_mfa(client, "remove", password=ALICE_PASSWORD, code=new_codes[0]).status_code == 200
    texts = method_notices(app, mail)
    assert len(texts) == 3
    assert "New recovery codes were made" in texts[1]
    assert "The authenticator app and its recovery codes were removed" in texts[2]


def test_a_refused_set_up_sends_nothing(app, client, seeded, mail, step_clock):
    from mfa_actions import post_mfa

    assert AuthActions(client).login().status_code == 302
    assert post_mfa(client, "start").status_code == 200
    assert post_mfa(client, "confirm", code="000000").status_code == 400
    assert method_notices(app, mail) == []


def test_a_passkey_added_then_removed(app, seeded, mail):
    from identity.services import passkeys
    from webauthn_keys import SoftKey

    issuer = "https://id.example.com"
    with app.app_context():
        alice_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        key = SoftKey()
        ceremony = passkeys.registration_options(alice_id, issuer)
        passkey = passkeys.register(alice_id, issuer, ceremony.state,
                                    key.registration(ceremony.state["challenge"], origin=issuer,
                                                     rp_id="id.example.com"), "a name the owner never chose")
        passkeys.remove_passkey(alice_id, passkey.id)
    texts = method_notices(app, mail)
    assert len(texts) == 2
    assert "A passkey was added" in texts[0] and "A passkey was removed" in texts[1]
    assert "a name the owner never chose" not in texts[0]  # the name is the adder's words, not ours


def test_an_authenticator_code_used_again_is_audited_and_mailed(app, client, seeded, mail, step_clock):
    """A code of the app, once accepted, is refused within its window; whoever enters it again has
    the password and saw the code (over a shoulder, a phishing page that relays it). OWASP ASVS
    4.0.3, 2.8.5: the reuse is logged as such and the owner is told. A wrong code is neither."""
    from mfa_actions import code_at, enrol_user, password_step, second_step

    secret, _ = enrol_user(app)
    code = code_at(secret)
    password_step(client)
    assert second_step(client, code).status_code == 302
    with app.app_context():
        assert mail_service.wait_until_sent()
    mail.clear()

    other = app.test_client()
    password_step(other)
    assert second_step(other, "000000" if code != "000000" else "111111").status_code == 400  # wrong: no notice
    assert second_step(other, code).status_code == 400
    with app.app_context():
        reasons = [e.detail["reason"] for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "mfa_failed").order_by(AuditEvent.id))]
        assert mail_service.wait_until_sent()
    assert reasons == ["bad_code", "code_reused"]
    [message] = mail.to(ALICE_MAIL)
    assert "used again" in message["Subject"]
    text = mail.text(message)
    assert mail.links(message) == [] and "(UTC)" in text and "Forgot your password?" in text

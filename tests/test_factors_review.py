"""Second factors and passkeys where they meet the protocol: the password and refresh grants of a
client that requires a second factor, and what the tokens then say."""

import pytest
from sqlalchemy import update

from actions import OAuthActions
from conftest import ALICE_PASSWORD
from identity.extensions import db
from identity.models import Client
from mfa_actions import claims, step_clock  # noqa: F401


@pytest.fixture(autouse=True)
def _clock(step_clock):
    return step_clock


def _require_mfa(app, client_id: str) -> None:
    with app.app_context():
        db.session.execute(update(Client).where(Client.client_id == client_id).values(require_mfa=True))
        db.session.commit()


def test_the_password_grant_of_a_client_that_requires_mfa_issues_nothing(client, app, flow_clients):
    """require_mfa: the client's users sign in with a second factor; the password grant has no
    second step, so it can issue nothing to such a client, even for a user without a factor."""
    _require_mfa(app, "legacy")
    response = OAuthActions(client).token("legacy", grant_type="password", username="alice",
                                          password=ALICE_PASSWORD, scope="openid offline_access")
    assert response.status_code == 400, claims(response.get_json()["access_token"])
    body = response.get_json()
    assert "access_token" not in body and body["error"] == "unauthorized_client"
    assert "second factor" in body["error_description"]


def test_a_client_that_now_requires_mfa_refreshes_no_single_factor_sign_in(client, app, flow_clients):
    """A refresh token from a sign-in with the password alone, issued before the operator set
    require_mfa on the client (`clients update --require-mfa`), issues nothing more to it: the
    client's tokens would otherwise say acr 1fa for as long as the app keeps refreshing."""
    from actions import AuthActions

    AuthActions(client).login()
    oauth = OAuthActions(client)
    body = oauth.code_flow(client_id="native", scope="openid offline_access")[0].get_json()
    assert claims(body["access_token"])["acr"] == "1fa"
    _require_mfa(app, "native")
    refreshed = oauth.token("native", grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 400, claims(refreshed.get_json()["access_token"])
    assert refreshed.get_json()["error"] == "invalid_grant"


def test_a_code_of_a_single_factor_sign_in_is_not_redeemed_once_the_client_requires_mfa(client, app, flow_clients):
    from actions import AuthActions

    AuthActions(client).login()
    oauth = OAuthActions(client)
    code, verifier = oauth.code_with_pkce("native")
    _require_mfa(app, "native")
    redeemed = oauth.redeem("native", code, verifier)
    assert redeemed.status_code == 400 and redeemed.get_json()["error"] == "invalid_grant"


# digits that str.isdigit() takes but hmac.compare_digest refuses to compare (non-ASCII)
NON_ASCII_DIGITS = ["１２３４５６", "١٢٣٤٥٦", "²³⁴⁵⁶⁷"]


@pytest.mark.parametrize("code", NON_ASCII_DIGITS)
def test_a_code_of_non_ascii_digits_is_a_wrong_code_on_the_second_step(client, app, seeded, code):
    from sqlalchemy import select

    from identity.models import User
    from mfa_actions import enrol_user, password_step, second_step

    enrol_user(app)
    assert "/account/login/mfa" in password_step(client).headers["Location"]
    response = second_step(client, code)
    assert response.status_code == 400, response.status_code
    assert "That code is not right" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.failed_attempts).where(User.username == "alice")) == 1


@pytest.mark.parametrize("code", NON_ASCII_DIGITS[:1])
def test_an_otp_of_non_ascii_digits_is_a_wrong_code_to_the_local_api(client, app, flow_clients, code):
    from actions import AuthActions
    from mfa_actions import enrol_user

    AuthActions(client).login()  # the password alone, before the factor: the change needs `otp`
    access = OAuthActions(client).code_flow(client_id="native", scope="openid IdentityServerApi")[0].get_json()
    enrol_user(app)
    new = "lantern-orchid-velvet-204"
    response = client.post("/localapi/password", headers={"Authorization": "Bearer " + access["access_token"]},
                           json={"current_password": ALICE_PASSWORD, "new_password": new, "confirm_password": new,
                                 "otp": code})
    assert response.status_code == 403, response.status_code
    assert response.mimetype == "application/problem+json"


BS = 0x10  # backup state: "backed up", which a credential that is not backup eligible cannot be


def test_a_registration_backed_up_but_not_backup_eligible_is_refused_not_a_500(client, app, seeded):
    from actions import AuthActions
    from test_passkeys_web import register_over_http
    from webauthn_keys import UP, UV, SoftKey

    AuthActions(client).login()
    key = SoftKey()
    original = key.registration
    key.registration = lambda challenge, **kw: original(challenge, flags=UP | UV | BS, **kw)
    response = register_over_http(client, key)
    assert response.status_code == 400, response.status_code
    assert "error" in response.get_json()


def test_an_assertion_backed_up_but_not_backup_eligible_is_refused_not_a_500(client, app, seeded):
    from actions import AuthActions
    from test_passkeys_web import ORIGIN, RP_ID, register_over_http, token
    from webauthn_keys import UP, UV, SoftKey

    auth = AuthActions(client)
    auth.login()
    key = SoftKey()
    assert register_over_http(client, key).status_code == 201
    auth.logout()
    csrf = token(client)
    challenge = client.post("/account/login/passkey/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    answer = key.assertion(challenge, origin=ORIGIN, rp_id=RP_ID, flags=UP | UV | BS)
    response = client.post("/account/login/passkey", data={"csrf_token": csrf, "credential": answer})
    assert response.status_code == 400, response.status_code
    assert "Signed in as" not in client.get("/").get_data(as_text=True)


def test_a_credential_nested_too_deeply_is_refused_not_a_500(client, seeded):
    """The json module raises RecursionError on deep nesting, which py_webauthn does not catch:
    the login page's passkey form takes the field from anyone who asked for options."""
    from test_passkeys_web import token

    csrf = token(client)
    assert client.post("/account/login/passkey/options", headers={"X-CSRFToken": csrf}).status_code == 200
    deep = "[" * 5000 + "]" * 5000  # 10 KB, within the field's 16 KiB
    response = client.post("/account/login/passkey", data={"csrf_token": csrf, "credential": deep})
    assert response.status_code == 400, response.status_code
    assert "could not be verified" in response.get_data(as_text=True)


def test_a_registration_nested_too_deeply_is_refused_not_a_500(client, seeded):
    from actions import AuthActions
    from test_passkeys_web import token

    AuthActions(client).login()
    csrf = token(client, "/account/mfa")
    assert client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).status_code == 200
    response = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},
                           json={"credential": "[" * 5000 + "]" * 5000, "name": "deep"})
    assert response.status_code == 400, response.status_code


@pytest.mark.parametrize("name", ["Laptop\x00", "Laptop\u202egnp", "Lap\x01top"])
def test_a_passkey_name_with_control_characters_is_refused_and_stores_nothing(client, app, seeded, name):
    """PostgreSQL refuses a NUL in a text: the registration answered 503 (a database error); a
    text-direction mark turns the name around on the page, as a user's name may not (login_names)."""
    from sqlalchemy import func, select

    from actions import AuthActions
    from identity.models import Passkey
    from test_passkeys_web import ORIGIN, RP_ID, token
    from webauthn_keys import SoftKey

    AuthActions(client).login()
    csrf = token(client, "/account/mfa")
    challenge = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}).get_json()["challenge"]
    response = client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},
                           json={"credential": SoftKey().registration(challenge, origin=ORIGIN, rp_id=RP_ID),
                                 "name": name})
    assert response.status_code == 400, response.status_code
    assert "control characters" in response.get_json()["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Passkey)) == 0


def test_a_passkey_only_user_is_told_to_sign_in_again_not_to_send_an_otp_they_cannot_have(client, app, flow_clients):
    """A user whose only second factor is a passkey was told by the 403 to "send `otp`", which
    they can never have, and every `otp` they tried counted toward the lockout. They are now told
    to sign in again with the passkey, and a hopeless `otp` is not counted."""
    from actions import AuthActions
    from identity.models import User
    from test_mfa_password import register_passkey

    AuthActions(client).login()
    access = OAuthActions(client).code_flow(client_id="native", scope="openid IdentityServerApi")[0].get_json()
    alice_id = register_passkey(app)
    new = "lantern-orchid-velvet-204"
    for otp in (None, "123456"):
        body = {"current_password": ALICE_PASSWORD, "new_password": new, "confirm_password": new}
        if otp:
            body["otp"] = otp
        response = client.post("/localapi/password", headers={"Authorization": "Bearer " + access["access_token"]},
                               json=body)
        assert response.status_code == 403
        detail = response.get_json()["detail"]
        assert "passkey" in detail and "send `otp`" not in detail, detail
    with app.app_context():
        assert db.session.get(User, alice_id).failed_attempts == 0


# --- forms of the factor pages and one-time links sent twice: at once, and in a row ---------------
# (a double click, a phone's retry, a browser resending a post whose answer was lost), against a
# 2-worker gunicorn server on SQLite or on the suite's PostgreSQL database (tests/servers.py);
# each test looks at both answers, the rows, the audit trail and the mail.

import re  # noqa: E402
import time  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from factors_review_support import (PASSWORD, away_from_a_step_boundary, browser_signed_in, code, enrol,  # noqa: E402
                                    events, factor_server, mfa_form, twice_at_once, user_id)
from identity.models import RecoveryCode, TotpFactor, User  # noqa: E402
from mail_server import mail  # noqa: E402,F401  (a fixture)

CODE_RE = re.compile(r"<li><code>([A-Z0-9]{5}-[A-Z0-9]{5})</code></li>")
CHANGED = "A sign-in method of your"


def unused_codes(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(RecoveryCode).where(RecoveryCode.used_at.is_(None)))


def totp_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(TotpFactor))


def settled_mail(mail, wait: float = 1.5) -> list[str]:
    """The subjects mailed so far, once the senders had time to send."""
    time.sleep(wait)
    return [str(message["Subject"]) for message in mail.messages]


@pytest.mark.parametrize("which", ["recovery_code", "app_code"])
def test_new_recovery_codes_with_a_code_clicked_twice_at_once_show_working_codes_in_both_answers(tmp_path, mail, which):
    """Make new recovery codes, with a code (a sign-in with the password alone), clicked twice: the
    second post finds its code spent by the first, which made a new set. Answered 403 "a code is
    needed", the page the browser shows last held no codes while the old set was gone: a user
    whose phone is lost was left with no code they had seen. Both answers show a set; the set
    answered last is the one that works; no wrong code is counted or audited."""
    with factor_server(tmp_path, f"regen-{which}") as (server, app):
        base = server.url
        browser = browser_signed_in(base)  # the password alone: new codes need a code
        secret, codes = enrol(app)
        away_from_a_step_boundary()
        given = codes[0] if which == "recovery_code" else code(secret)
        answers = twice_at_once(browser, base + "/account/mfa", mfa_form(browser, base, "regenerate", otp=given))
        assert [a.status_code for a in answers] == [200, 200], [(a.status_code, a.text[-600:]) for a in answers]
        shown = [CODE_RE.findall(a.text) for a in answers]
        assert all(len(s) == 10 for s in shown), shown
        assert unused_codes(app) == 10
        assert events(app, "mfa_failed") == 0
        # a retry in a row (the answer was lost): answered the same way
        again = browser.post(base + "/account/mfa", data=mfa_form(browser, base, "regenerate", otp=given), timeout=30)
        assert again.status_code == 200 and len(CODE_RE.findall(again.text)) == 10, again.text[-600:]
        assert events(app, "mfa_failed") == 0
        # the set shown last works at sign-in
        last = CODE_RE.findall(again.text)[0]
        other = browser_signed_in_second_step(base, last)
        assert other.status_code == 302 and "/account/login" not in other.headers["Location"], other.text[-400:]


def browser_signed_in_second_step(base: str, recovery_code: str):
    import requests

    from servers import csrf_from, sign_in

    browser = requests.Session()
    first = sign_in(browser, base, "alice", PASSWORD)
    assert "/account/login/mfa" in first.headers["Location"], first.headers
    page = browser.get(base + "/account/login/mfa", timeout=30)
    return browser.post(base + "/account/login/mfa", data={"csrf_token": csrf_from(page.text), "code": recovery_code},
                        timeout=30, allow_redirects=False)


def test_removing_the_app_clicked_twice_at_once_removes_it_once_and_says_so_twice(tmp_path, mail):
    """Remove the app (password and code) clicked twice: the second post found its code spent by
    the first and answered 400 "That code is not right" (audited as a wrong code, counted toward
    the lockout) for an app that was removed. Both say it is removed; one audit event, one notice."""
    with factor_server(tmp_path, "remove") as (server, app):
        base = server.url
        browser = browser_signed_in(base)
        secret, _ = enrol(app)
        away_from_a_step_boundary()
        time.sleep(1)
        mail.clear()
        form = mfa_form(browser, base, "remove", password=PASSWORD, code=code(secret))
        answers = twice_at_once(browser, base + "/account/mfa", form)
        assert [a.status_code for a in answers] == [200, 200], [(a.status_code, a.text[-600:]) for a in answers]
        assert all("authenticator app and recovery codes were removed" in a.text for a in answers)
        assert all("not right" not in a.text for a in answers), [a.text[-600:] for a in answers]
        assert totp_rows(app) == 0 and unused_codes(app) == 0
        assert events(app, "mfa_disabled") == 1 and events(app, "mfa_failed") == 0
        from identity.models import User as Users

        with app.app_context():
            assert db.session.scalar(select(Users.failed_attempts)) == 0  # no attempt left counted
        subjects = settled_mail(mail)
        assert len(subjects) == 1 and subjects[0].startswith(CHANGED), subjects  # no "code used again" notice
        again = browser.post(base + "/account/mfa", data={**form, "csrf_token": mfa_form(browser, base, "remove")["csrf_token"]},
                             timeout=30)  # a retry in a row (the answer was lost)
        assert again.status_code == 200 and "were removed" in again.text, again.text[-600:]
        assert events(app, "mfa_disabled") == 1 and events(app, "mfa_failed") == 0


def test_a_verification_link_opened_twice_at_once_is_used_once_and_the_refusal_audited(tmp_path):
    """A verification link opened twice at once (a double click, a mail scanner that opens it as the
    person does): it is used once (one `email_verified`), and the other open is refused as a used
    link, audited as every refusal is (docs/email.md): the one that lost the race at the link's
    conditional UPDATE was refused with no audit event, unlike the same link opened later."""
    import requests

    from identity.models import AccountToken
    from identity.services import account_tokens
    from servers import run_together

    with factor_server(tmp_path, "verify") as (server, app):
        base = server.url
        for round_ in range(4):
            with app.app_context():
                db.session.execute(AccountToken.__table__.delete())
                db.session.execute(User.__table__.update().values(email_verified=False))
                token = account_tokens.issue(user_id(app), account_tokens.VERIFY_EMAIL, 3600, email="alice@example.com")
                db.session.commit()
            get = lambda: requests.get(base + "/account/verify-email?token=" + token, timeout=30)
            answers = run_together(get, get)
            assert sorted(a.status_code for a in answers) == [200, 400], [a.status_code for a in answers]
            assert events(app, "email_verified") == round_ + 1
            assert events(app, "email_verification_failed") == round_ + 1, f"round {round_}: the refusal is not audited"
            with app.app_context():
                assert db.session.scalar(select(User.email_verified)) is True
                assert db.session.scalar(select(func.count()).select_from(AccountToken)
                                         .where(AccountToken.used_at.is_not(None))) == 1


def signed_in_with_both_steps(base: str, secret: str):
    """A browser signed in with the password and a code of the app (a recent second factor)."""
    import requests

    from servers import csrf_from, sign_in

    browser = requests.Session()
    first = sign_in(browser, base, "alice", PASSWORD)
    assert "/account/login/mfa" in first.headers["Location"], first.headers
    page = browser.get(base + "/account/login/mfa", timeout=30)
    second = browser.post(base + "/account/login/mfa", data={"csrf_token": csrf_from(page.text), "code": code(secret)},
                          timeout=30, allow_redirects=False)
    assert second.status_code == 302 and "/account/login" not in second.headers["Location"], second.text[-400:]
    return browser


def test_removing_a_passkey_with_a_code_clicked_twice_at_once_is_no_wrong_code(tmp_path, mail):
    """A passkey's Remove, with a code (a sign-in with the password alone), clicked twice at once:
    it is removed once (one `passkey_removed`, one notice). The other post found its code spent
    and answered "sign in again" (303), audited `mfa_failed` and counted toward the lockout; it
    is answered as a passkey removed already is (404, "removed already": tests/test_manage_review.py
    pins that answer for the same form sent again in a row)."""
    from identity.models import Passkey, User as Users
    from servers import csrf_from
    from webauthn_keys import SoftKey

    with factor_server(tmp_path, "passkey-code") as (server, app):
        base = server.url
        browser = browser_signed_in(base)
        secret, _ = enrol(app)
        away_from_a_step_boundary()
        both = signed_in_with_both_steps(base, secret)
        csrf = csrf_from(both.get(base + "/account/mfa", timeout=30).text)
        options = both.post(base + "/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf}, timeout=30)
        assert options.status_code == 200, options.text
        credential = SoftKey().registration(options.json()["challenge"], origin=base, rp_id="127.0.0.1")
        added = both.post(base + "/account/mfa/passkeys", headers={"X-CSRFToken": csrf}, timeout=30,
                          json={"credential": credential, "name": "Laptop"})
        assert added.status_code == 201, added.text
        time.sleep(1.5)
        mail.clear()
        form = mfa_form(browser, base, "remove", otp=code(secret, 1))  # the current step's was the sign-in's
        del form["action"]
        answers = twice_at_once(browser, f"{base}/account/mfa/passkeys/{added.json()['id']}/remove", form)
        assert sorted(a.status_code for a in answers) == [302, 404], \
            [(a.status_code, re.findall(r"<h1[^>]*>([^<]*)", a.text)) for a in answers]
        assert "removed already" in next(a for a in answers if a.status_code == 404).text
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Passkey)) == 0
            assert db.session.scalar(select(Users.failed_attempts)) == 0
        assert events(app, "passkey_removed") == 1 and events(app, "mfa_failed") == 0
        assert len(settled_mail(mail)) == 1, settled_mail(mail, 0)  # the notice; no "code used again"


def test_one_passkey_answer_sent_twice_is_a_used_challenge_not_a_cloned_key(tmp_path):
    """The passkey sign-in's answer (an assertion of a key that counts its uses) posted twice at
    once, or again in a row (a retry): one signs in; the other is refused as the replay it is
    (`passkey_sign_in_failed`, reason `challenge used already`, docs/passkeys.md). It was judged
    by its count, which equals the one the first stored (it is the same answer), as a copied
    key: `passkey_clone_detected` in the audit log and "its use counter went backwards, a sign
    that it was copied" on the page, an alarm about a key that was never copied."""
    from html import unescape

    import requests
    from sqlalchemy import text

    from identity.models import AuditEvent
    from servers import csrf_from, run_together
    from webauthn_keys import SoftKey

    with factor_server(tmp_path, "assertion") as (server, app):
        base = server.url
        owner = browser_signed_in(base)
        csrf = csrf_from(owner.get(base + "/account/mfa", timeout=30).text)
        challenge = owner.post(base + "/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf},
                               timeout=30).json()["challenge"]
        key = SoftKey()
        added = owner.post(base + "/account/mfa/passkeys", headers={"X-CSRFToken": csrf}, timeout=30,
                           json={"credential": key.registration(challenge, origin=base, rp_id="127.0.0.1")})
        assert added.status_code == 201, added.text
        for round_ in range(3):
            browser = requests.Session()
            csrf = csrf_from(browser.get(base + "/account/login", timeout=30).text)
            challenge = browser.post(base + "/account/login/passkey/options", headers={"X-CSRFToken": csrf},
                                     timeout=30).json()["challenge"]
            form = {"csrf_token": csrf, "credential": key.assertion(challenge, origin=base, rp_id="127.0.0.1")}
            saved = browser.cookies.copy()  # a retry after a lost answer is sent with the cookie of before
            post = lambda: requests.post(base + "/account/login/passkey", data=form, cookies=saved, timeout=30,
                                         allow_redirects=False)
            answers = run_together(post, post) + [post()]
            assert sorted(a.status_code for a in answers) == [302, 400, 400], [a.status_code for a in answers]
            refused = [a for a in answers if a.status_code == 400]
            assert all("could not be verified" in unescape(a.text) and "copied" not in a.text for a in refused), \
                f"round {round_}: " + " | ".join(re.findall(r"passkey was refused[^<]*", refused[0].text))
            with app.app_context():
                assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                                         .where(AuditEvent.event == "passkey_clone_detected")) == 0
                reasons = [e.detail.get("reason") for e in db.session.scalars(
                    select(AuditEvent).where(AuditEvent.event == "passkey_sign_in_failed"))]
                assert reasons == ["challenge used already"] * 2 * (round_ + 1), reasons
                assert db.session.execute(text("SELECT count(*) FROM user_sessions")).scalar() == round_ + 2

"""The authenticator app (TOTP) and recovery codes: enrolment on /account/mfa, the second sign-in
step /account/login/mfa, removal, and the half-signed-in state between the steps."""

import re
import time

import pytest
from sqlalchemy import func, select

from actions import AuthActions
from conftest import ALICE_PASSWORD, csrf_token
from identity.extensions import db
from identity.models import AuditEvent, RecoveryCode, TotpFactor, User, UserSession
from identity.services import key_encryption
from mfa_actions import (CLOCK, CODE_RE, SECRET_RE, code_at, enrol, enrol_user, password_step, post_mfa,  # noqa: F401
                         second_step, sign_in_with_code, step_clock)


@pytest.fixture(autouse=True)
def _clock(step_clock):
    return step_clock


@pytest.fixture
def alice(client, seeded):
    """alice, signed in (fresh) in `client`."""
    assert AuthActions(client).login().status_code == 302
    return client


@pytest.fixture
def enrolled(alice, app):
    """alice with an authenticator app; signed out again. Returns (secret, recovery codes)."""
    secret, codes = enrol(alice)
    AuthActions(alice).logout()
    CLOCK.next_step()  # the enrolment used this step's code
    return secret, codes


def sessions_of(app, username="alice") -> int:
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        return db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == user_id))


def test_the_page_needs_a_signed_in_user(client, seeded):
    response = client.get("/account/mfa")
    assert response.status_code == 302
    assert "/account/login" in response.headers["Location"]


def test_enrolment_shows_a_qr_code_and_the_secret_and_stores_the_secret_encrypted(alice, app):
    page = post_mfa(alice, "start")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<svg" in html and 'class="segno"' in html
    secret = SECRET_RE.search(html).group(1)
    with app.app_context():
        row = db.session.scalar(select(TotpFactor))
        assert row.confirmed_at is None
        assert secret not in row.secret_encrypted
        assert key_encryption.decrypt(row.secret_encrypted, "t") == secret
    # not a factor until confirmed: sign-in still takes the password alone
    assert AuthActions(app.test_client()).login().status_code == 302


def test_enrolment_is_confirmed_only_by_a_valid_code(alice, app):
    html = post_mfa(alice, "start").get_data(as_text=True)
    secret = SECRET_RE.search(html).group(1)
    wrong = post_mfa(alice, "confirm", code="000000" if code_at(secret) != "000000" else "111111")
    assert wrong.status_code == 400
    assert "not right" in wrong.get_data(as_text=True)
    far = post_mfa(alice, "confirm", code=code_at(secret, 3))
    assert far.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(TotpFactor.confirmed_at)) is None
    right = post_mfa(alice, "confirm", code=code_at(secret))
    assert right.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(TotpFactor.confirmed_at)) is not None
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode)) == 10
        assert db.session.scalar(select(AuditEvent.event).where(AuditEvent.event == "mfa_enabled")) == "mfa_enabled"


def test_a_second_click_on_confirm_says_the_app_is_set_up_and_how_to_get_new_codes(alice, app):
    """A double-clicked "Confirm": the browser shows the second answer, and the recovery codes were
    in the first. The second said "Sign out and sign in again with your second factor first" (the
    app the first click set up was now a factor the session had not used), or "not right" when the
    two raced; the user never saw their codes nor learned the app was set up. It now says so, and
    how to make new codes; the codes of the first click stay the ones stored."""
    secret, codes = enrol(alice)
    with app.app_context():
        stored = set(db.session.scalars(select(RecoveryCode.code_hash)))
    again = post_mfa(alice, "confirm", code=code_at(secret))
    body = again.get_data(as_text=True)
    assert again.status_code == 409, body
    assert "set up already" in body and "make new ones" in body
    with app.app_context():
        assert set(db.session.scalars(select(RecoveryCode.code_hash))) == stored


def test_the_factors_page_has_no_duplicate_element_ids(alice, app):
    """Each of the page's forms rendered its CSRF field with id="csrf_token": the same id several
    times in one document (invalid HTML; a label or script that looks it up finds the first)."""
    enrol(alice)
    html = alice.get("/account/mfa").get_data(as_text=True)
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), sorted(i for i in set(ids) if ids.count(i) > 1)


def test_recovery_codes_are_shown_once_and_stored_as_hashes(alice, app):
    secret, codes = enrol(alice)
    assert len(set(codes)) == 10
    again = alice.get("/account/mfa").get_data(as_text=True)
    assert not any(code in again for code in codes)
    assert "10 of your recovery codes are unused" in again
    with app.app_context():
        stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
    assert not any(code.replace("-", "") in h or code in h for code in codes for h in stored)


def test_recovery_codes_are_stored_salted(alice, app):
    """Recovery codes have 50 random bits: stored as a bare SHA-256, one pass over 2^50 codes finds
    every account's codes at once in a copy of the table. Each set is stored under a random salt
    of its own (OWASP ASVS 4.0.3, 2.6.2), so a copy gives no code without the work of that user's
    set; the codes still sign in."""
    import hashlib

    _, codes = enrol(alice)
    with app.app_context():
        stored = set(db.session.scalars(select(RecoveryCode.code_hash)).all())
    bare = {hashlib.sha256(code.replace("-", "").encode()).hexdigest() for code in codes}
    assert not stored & bare
    AuthActions(alice).logout()
    password_step(alice)
    assert second_step(alice, codes[3]).status_code == 302


def test_a_recovery_code_stored_before_salting_still_works_once(client, app, enrolled):
    import hashlib

    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "alice"))
        db.session.execute(RecoveryCode.__table__.delete())
        db.session.add(RecoveryCode(user_id=user_id, code_hash=hashlib.sha256(b"ABCDEFGHJK").hexdigest(),
                                    created_at=1, used_at=None))
        db.session.commit()
    password_step(client)
    assert second_step(client, "abcde-fghjk").status_code == 302
    other = app.test_client()
    password_step(other)
    assert second_step(other, "ABCDE-FGHJK").status_code == 400


def test_regenerating_recovery_codes_invalidates_the_old_set(alice, app):
    secret, old = enrol(alice)
    CLOCK.next_step()
    response = post_mfa(alice, "regenerate", otp=code_at(secret))  # a password sign-in: a code too
    assert response.status_code == 200
    from mfa_actions import CODE_RE
    new = CODE_RE.findall(response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    AuthActions(alice).logout()
    fresh = app.test_client()
    assert password_step(fresh).headers["Location"].startswith("/account/login/mfa")
    assert second_step(fresh, old[0]).status_code == 400
    assert second_step(fresh, new[0]).status_code == 302


def test_new_recovery_codes_need_a_recent_second_factor_or_a_code(client, app, seeded):
    """A session signed in with the password alone, before the owner set up the app elsewhere,
    gets no recovery codes (ten second factors of its own) without a code: the password page's rule."""
    def stored_codes():
        with app.app_context():
            return set(db.session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.used_at.is_(None))))

    assert AuthActions(client).login().status_code == 302
    secret, _ = enrol_user(app)
    old = stored_codes()
    assert 'name="otp"' in client.get("/account/mfa").get_data(as_text=True)
    refused = post_mfa(client, "regenerate")
    assert refused.status_code == 403 and not CODE_RE.findall(refused.get_data(as_text=True))
    assert "Enter a code from your authenticator app" in refused.get_data(as_text=True)
    wrong = post_mfa(client, "regenerate", otp="AAAAA-AAAAA")
    assert wrong.status_code == 403 and not CODE_RE.findall(wrong.get_data(as_text=True))
    assert stored_codes() == old and len(old) == 10  # the owner's codes still work

    accepted = post_mfa(client, "regenerate", otp=code_at(secret))
    assert accepted.status_code == 200 and len(CODE_RE.findall(accepted.get_data(as_text=True))) == 10

    CLOCK.next_step()
    recent = app.test_client()
    sign_in_with_code(recent, secret)
    assert 'name="otp"' not in recent.get("/account/mfa").get_data(as_text=True)
    assert len(CODE_RE.findall(post_mfa(recent, "regenerate").get_data(as_text=True))) == 10


def test_sign_in_with_a_totp_code(client, app, enrolled):
    secret, _ = enrolled
    response = password_step(client)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login/mfa")
    assert sessions_of(app) == 1  # the enrolling session only: none for the password step
    finished = second_step(client, code_at(secret))
    assert finished.status_code == 302
    assert sessions_of(app) == 2
    with app.app_context():
        amr = db.session.scalar(select(UserSession.amr).order_by(UserSession.id.desc()))
    assert amr == "pwd otp mfa"
    assert client.get("/account/password").status_code == 200


def test_a_code_is_accepted_once(client, app, enrolled):
    secret, _ = enrolled
    code = code_at(secret)
    password_step(client)
    assert second_step(client, code).status_code == 302
    other = app.test_client()
    password_step(other)
    replay = second_step(other, code)
    assert replay.status_code == 400
    assert "not right, or was used already" in replay.get_data(as_text=True)


def test_the_previous_and_next_step_are_accepted_but_not_further(client, app, enrolled):
    secret, _ = enrolled
    CLOCK.next_step()  # the step before is then one not used at enrolment
    password_step(client)
    assert second_step(client, code_at(secret, -2)).status_code == 400
    assert second_step(client, code_at(secret, 2)).status_code == 400
    assert second_step(client, code_at(secret, -1)).status_code == 302


def test_an_older_step_is_refused_after_a_newer_one(client, app, enrolled):
    secret, _ = enrolled
    password_step(client)
    assert second_step(client, code_at(secret, 1)).status_code == 302
    other = app.test_client()
    password_step(other)
    assert second_step(other, code_at(secret)).status_code == 400  # an older step than the one used


def test_a_recovery_code_works_once(client, app, enrolled):
    _, codes = enrolled
    password_step(client)
    assert second_step(client, codes[0].lower().replace("-", " ")).status_code == 302
    other = app.test_client()
    password_step(other)
    assert second_step(other, codes[0]).status_code == 400
    assert second_step(other, codes[1]).status_code == 302


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 3}])
def test_wrong_codes_count_toward_the_lockout_and_a_right_password_does_not_reset_it(client, app, enrolled):
    secret, codes = enrolled
    password_step(client)
    assert second_step(client, "000001").status_code == 400
    assert second_step(client, "000002").status_code == 400
    # the password again: its success does not take off the wrong codes
    assert password_step(client).headers["Location"].startswith("/account/login/mfa")
    assert second_step(client, "000003").status_code == 400  # the third failure: locked
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        assert user.locked_until > time.time()
    assert second_step(client, code_at(secret)).status_code == 400  # locked: even a right code fails
    locked = password_step(client)  # and the password step too
    assert locked.status_code == 400 and "Location" not in locked.headers


def test_the_half_signed_in_state_expires(client, app, enrolled):
    secret, _ = enrolled
    password_step(client)
    app.config["MFA_PENDING_SECONDS"] = 1
    time.sleep(2.1)
    response = client.get("/account/login/mfa")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login")
    assert "/mfa" not in response.headers["Location"]


def test_the_half_signed_in_state_is_not_a_session(client, app, enrolled, seeded):
    password_step(client)
    assert sessions_of(app) == 1  # the enrolment's, signed out since
    assert client.get("/account/password").status_code == 302
    assert client.get("/account/mfa").status_code == 302
    assert client.get("/account/grants").status_code == 302
    assert client.post("/account/password/check", data={"new_password": "x"}).status_code in (302, 400)
    page = client.get("/")
    assert "Signed in as" not in page.get_data(as_text=True)
    # nothing is issued: the authorization endpoint sees no one signed in
    from actions import OAuthActions, redirect_params
    oauth = OAuthActions(client)
    asked = oauth.authorize(client_id="spa", code_challenge="x" * 43, code_challenge_method="S256")
    assert asked.status_code == 302 and asked.headers["Location"].startswith("/account/login?")
    silent = oauth.authorize(client_id="spa", prompt="none", code_challenge="x" * 43, code_challenge_method="S256")
    assert redirect_params(silent.headers["Location"])["error"] == "login_required"
    # userinfo takes bearer tokens only: the cookie is nothing to it
    assert client.get("/connect/userinfo").status_code == 401


def test_the_pending_request_survives_both_steps(client, app, enrolled, flow_clients):
    from actions import OAuthActions, redirect_params
    secret, _ = enrolled
    oauth = OAuthActions(client)
    start = oauth.authorize(client_id="native", code_challenge="x" * 43, code_challenge_method="S256")
    login_url = start.headers["Location"]
    assert "/account/login" in login_url
    from urllib.parse import parse_qs, urlsplit
    return_url = parse_qs(urlsplit(login_url).query)["returnUrl"][0]
    to_second = password_step(client, return_url=return_url)
    assert to_second.status_code == 302
    assert "returnUrl=" in to_second.headers["Location"]
    done = second_step(client, code_at(secret), return_url=return_url)
    assert done.status_code == 303
    assert done.headers["Location"].startswith(OAuthActions.REDIRECTS["native"])
    assert "code" in redirect_params(done.headers["Location"])


def test_a_nul_in_the_pending_client_id_is_no_client_for_either_step(client, app, enrolled, flow_clients):
    """PostgreSQL refuses a NUL in a text: the second step's page and its audited sign-in take it as no client."""
    secret, _ = enrolled
    return_url = "/connect/authorize?client_id=nat%00ive&redirect_uri=com.example.native%3A%2Fcb"
    assert password_step(client, return_url=return_url).status_code == 302
    wrong = second_step(client, "123456" if code_at(secret) != "123456" else "654321", return_url=return_url)
    assert wrong.status_code == 400
    assert second_step(client, code_at(secret), return_url=return_url).status_code == 302

def test_removal_needs_the_password_and_a_code(alice, app):
    secret, codes = enrol(alice)
    CLOCK.next_step()
    wrong_password = post_mfa(alice, "remove", password="not-the-password", code=code_at(secret))
    assert wrong_password.status_code == 400
    wrong_code = post_mfa(alice, "remove", password=ALICE_PASSWORD, code="123456" if code_at(secret) != "123456" else "654321")
    assert wrong_code.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TotpFactor)) == 1
    removed = post_mfa(alice, "remove", password=ALICE_PASSWORD, code=codes[3])
    assert removed.status_code == 200, removed.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TotpFactor)) == 0
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode)) == 0
    AuthActions(alice).logout()
    assert AuthActions(app.test_client()).login().status_code == 302


@pytest.mark.parametrize("app_config", [{"LOCKOUT_MAX_FAILURES": 2}])
def test_a_wrong_password_on_the_removal_form_is_recorded(alice, app):
    """Every password check counts toward the lockout and is audited (the sign-in, the password
    and address changes): the removal form's was counted but not recorded, so wrong passwords
    there left nothing in the audit log but, at the end, `account_locked` (ASVS 4.0.3, 7.2.1)."""
    secret, _ = enrol(alice)
    CLOCK.next_step()
    assert post_mfa(alice, "remove", password="not-the-password", code=code_at(secret)).status_code == 400
    assert post_mfa(alice, "remove", password="not-the-password-2", code=code_at(secret)).status_code == 400
    assert post_mfa(alice, "remove", password=ALICE_PASSWORD, code=code_at(secret)).status_code == 400  # locked
    with app.app_context():
        recorded = [(e.event, e.detail) for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.event.in_(["mfa_failed", "account_locked"])).order_by(AuditEvent.id))]
    assert recorded == [("mfa_failed", {"reason": "bad_password", "for": "remove_factor"}),
                        ("mfa_failed", {"reason": "bad_password", "for": "remove_factor"}), ("account_locked", {}),
                        ("mfa_failed", {"reason": "locked", "for": "remove_factor"})]


def test_the_home_page_links_to_the_mfa_page(alice):
    assert 'href="/account/mfa"' in alice.get("/").get_data(as_text=True)


def test_second_step_results_are_counted_in_the_metrics(client, app, enrolled):
    from identity.services import metrics

    def count(method, result):
        return metrics.REGISTRY.get_sample_value("identity_mfa_results_total",
                                                 {"method": method, "result": result}) or 0.0

    secret, codes = enrolled
    before = {key: count(*key) for key in [("totp", "failure"), ("totp", "success"), ("recovery_code", "success")]}
    password_step(client)
    assert second_step(client, "000001").status_code == 400
    assert second_step(client, code_at(secret)).status_code == 302
    assert count("totp", "failure") == before[("totp", "failure")] + 1
    assert count("totp", "success") == before[("totp", "success")] + 1
    AuthActions(client).logout()
    password_step(client)
    assert second_step(client, codes[0]).status_code == 302
    assert count("recovery_code", "success") == before[("recovery_code", "success")] + 1


def test_a_disabled_user_cannot_finish_a_half_done_sign_in(app, enrolled):
    from identity.clock import now
    from identity.services import accounts, user_status

    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        user_id, version = user.id, user.password_version
        assert accounts.pending_user(user_id, version, now(), "a-pending-id") is not None
        user_status.disable_user("alice")
        assert accounts.pending_user(user_id, version, now(), "a-pending-id") is None


def test_a_half_done_sign_in_is_finished_once(app, enrolled):
    """Two second steps of one half-done sign-in (a double click, a copy of its cookie racing the
    original past pending_user): the first starts a session and spends the pending id; the second
    starts none, and is audited (its code is used up, as a right code is once checked)."""
    from identity.services import accounts
    from identity.services.browser_sessions import SessionUser

    secret, codes = enrolled
    with app.test_request_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        person = SessionUser.of(user)
        before = sessions_of(app)
        first = accounts.finish_sign_in(person, code_at(secret), pending_id="one-half-done-sign-in")
        second = accounts.finish_sign_in(person, codes[0], pending_id="one-half-done-sign-in")

        assert first.user is not None and first.sid
        assert second.user is None and second.sid is None
        assert sessions_of(app) == before + 1
        failed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "sign_in_failed")).all()
        assert [event.detail for event in failed] == [{"reason": "finished_already"}]
        assert accounts.pending_user(person.id, person.password_version, int(time.time()),
                                     "one-half-done-sign-in") is None


def test_start_again_on_the_second_step_keeps_the_pending_request(client, seeded, enrolled):
    """The second step's "Start again" went to the sign-in page without the app's request: the
    person signed in to the account pages and the app never got its answer."""
    import html
    from urllib.parse import parse_qs, urlsplit

    return_url = "/connect/authorize?client_id=spa&response_type=code&scope=openid"
    first = password_step(client, return_url=return_url)
    assert first.status_code == 302 and "/account/login/mfa" in first.headers["Location"]
    page = client.get(first.headers["Location"]).get_data(as_text=True)
    start_again = html.unescape(re.search(r'<a href="([^"]*)">Start again</a>', page).group(1))
    assert urlsplit(start_again).path == "/account/login"
    assert parse_qs(urlsplit(start_again).query).get("returnUrl") == [return_url]


def test_the_factors_page_leads_back_only_to_a_local_request_and_only_once_a_factor_is_set_up(alice, app):
    """Sent from a client's "Two-step sign-in required" page (returnUrl): no way back before a
    factor is set up, none to another site."""
    request = "/connect/authorize?client_id=spa&response_type=code&scope=openid"
    assert 'id="mfa-return"' not in alice.get("/account/mfa", query_string={"returnUrl": request}).get_data(as_text=True)
    enrol(alice)
    page = alice.get("/account/mfa", query_string={"returnUrl": request}).get_data(as_text=True)
    assert 'id="mfa-return" href="/connect/authorize?client_id=spa&amp;' in page and "Continue to Single-Page App" in page
    page = alice.get("/account/mfa", query_string={"returnUrl": "https://evil.example/"}).get_data(as_text=True)
    assert 'id="mfa-return"' not in page and "evil.example" not in page


def test_an_enrolment_in_progress_shows_its_secret_only_to_the_browser_that_started_it(alice, app):
    """The app's secret is the factor itself: shown once to the session that asked for it. Every
    other session of the user (another device, a cookie taken) read it on the factors page while
    the enrolment waited for its code, and so held the second factor the owner then confirmed."""
    started = post_mfa(alice, "start")
    secret = SECRET_RE.search(started.get_data(as_text=True)).group(1)
    other = app.test_client()
    assert AuthActions(other).login().status_code == 302
    page = other.get("/account/mfa").get_data(as_text=True)
    assert secret not in page and 'id="totp-secret"' not in page
    refused = post_mfa(other, "confirm", code=code_at(secret))
    assert refused.status_code == 409 and not CODE_RE.findall(refused.get_data(as_text=True))
    with app.app_context():
        assert db.session.scalar(select(TotpFactor.confirmed_at)) is None
    assert secret in alice.get("/account/mfa").get_data(as_text=True)  # the browser that started it
    assert post_mfa(alice, "confirm", code=code_at(secret)).status_code == 200

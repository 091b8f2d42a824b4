"""Forgot password and reset, through the pages: the same answer for every account, a link by
mail (read from the test SMTP server), single use, expiry, superseding, the reset doing what a
password change does (refresh tokens, codes, sessions and older access tokens end; the lockout
count is cleared), a notice afterwards, the token kept out of logs and Referer headers, the
hourly mail cap, the rate limits, and SMTP failures."""

import logging
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

import mail_server
from actions import AuthActions, OAuthActions, forgot_password_from
from conftest import ALICE_PASSWORD, csrf_token
from statements import sqlite_write_lock, statements
from identity.extensions import db
from identity.models import AccountToken, AuditEvent, User, UserSession
from identity.services import accounts
from identity.services import mail as mail_service

NEW_PASSWORD = "saffron-glacier-ribbon-6402"
ALICE_MAIL = "alice@example.com"


def events(app, name=None):
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if name:
            query = query.where(AuditEvent.event == name)
        found = [(e.event, e.user_id, e.detail) for e in db.session.scalars(query)]
        db.session.remove()
    return found


def sent(app):
    """Let this test's sender thread finish what the requests queued."""
    with app.app_context():
        assert mail_service.wait_until_sent()


def ask(client, username="alice", return_url=None):
    url = "/account/forgot-password" + (f"?{urlencode({'returnUrl': return_url})}" if return_url else "")
    page = client.get(url)
    return client.post(url, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": username})


def reset_link(app, client, mail, *, count=1, **kwargs) -> str:
    assert ask(client, **kwargs).status_code == 200
    sent(app)
    return mail.link(mail.wait_for(to=ALICE_MAIL, count=count))


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def reset(client, link, new=NEW_PASSWORD, confirm=None):
    page = client.get(local(link))
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    token = parse_qs(urlsplit(link).query)["token"][0]
    return client.post(local(link), data={"csrf_token": csrf_token(html), "token": token, "new_password": new,
                                          "confirm_password": confirm or new})


def signs_in(client, password) -> bool:
    return AuthActions(client).login(password=password).status_code == 302


# --- the pages -----------------------------------------------------------------------------


def test_the_login_page_links_to_forgot_password_keeping_the_return_url(client, seeded):
    html = client.get("/account/login?returnUrl=/connect/authorize%3Fclient_id%3Dspa").get_data(as_text=True)
    assert 'href="/account/forgot-password?returnUrl=/connect/authorize?client_id%3Dspa"' in html
    page = client.get("/account/forgot-password")
    assert page.status_code == 200 and 'name="username"' in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"


def test_a_reset_link_is_mailed_absolute_under_the_issuer(app, client, seeded, mail):
    answer = ask(client)
    assert answer.status_code == 200 and "Check your mail" in answer.get_data(as_text=True)
    sent(app)
    message = mail.wait_for(to=ALICE_MAIL)
    link = mail.link(message)
    assert link.startswith("https://localhost/account/reset-password?token=")
    assert len(parse_qs(urlsplit(link).query)["token"][0]) == 43
    assert link in mail.html(message)
    assert [e[2] for e in events(app, "password_reset_requested")] == [{"outcome": "mailed"}]
    assert [e[2] for e in events(app, "mail_sent")] == [{"template": "password_reset"}]


def test_the_reset_sets_the_password_and_ends_everything_else(app, client, flow_clients, mail):
    # before: a refresh token, an access token and a second browser session of alice's
    other = app.test_client()
    other.__class__ = client.__class__
    assert signs_in(other, ALICE_PASSWORD)
    oauth = OAuthActions(other)
    tokens = oauth.code_flow("web", scope="openid offline_access IdentityServerApi")[0].get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert other.get("/localapi/account", headers=bearer).status_code == 200

    link = reset_link(app, client, mail)
    page = client.get(local(link))
    assert page.headers["Referrer-Policy"] == "no-referrer"
    # the page's own <meta name="referrer"> comes after the header in a browser: it must agree
    assert '<meta name="referrer" content="no-referrer">' in page.get_data(as_text=True)
    assert '<meta name="referrer" content="same-origin">' in client.get("/account/forgot-password").get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    done = reset(client, link)
    assert done.status_code == 302 and done.headers["Location"] == "/account/login"
    assert done.headers["Referrer-Policy"] == "no-referrer"
    assert "Your password was changed" in client.get("/account/login").get_data(as_text=True)

    assert other.get("/localapi/account", headers=bearer).status_code == 401  # older access tokens refused
    refreshed = oauth.token("web", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"
    assert other.get("/account/password").status_code == 302  # the other session ended
    with app.app_context():
        assert all(s.revoked_at for s in db.session.scalars(select(UserSession)))
    assert not signs_in(app.test_client(), ALICE_PASSWORD)
    assert signs_in(client, NEW_PASSWORD)
    assert len(events(app, "password_reset")) == 1


def test_after_the_reset_the_user_gets_a_notice_without_a_link(app, client, seeded, mail):
    link = reset_link(app, client, mail)
    reset(client, link)
    sent(app)
    notice = mail.wait_for(to=ALICE_MAIL, count=2)
    assert notice["Subject"] == "Your Portcullis Identity password was changed"
    text = mail.text(notice)
    assert "with a reset link sent to this address" in text and "(UTC)" in text
    assert mail.links(notice) == [] and "href" not in mail.html(notice)  # nothing to click, nothing to phish with


def test_the_reset_page_returns_to_the_pending_authorization_request(app, client, seeded, mail):
    pending = "/connect/authorize?" + urlencode({"client_id": "spa", "response_type": "code", "scope": "openid",
                                                 "redirect_uri": "http://127.0.0.1:8080/callback"})
    link = reset_link(app, client, mail, return_url=pending)
    assert parse_qs(urlsplit(link).query)["returnUrl"] == [pending]
    done = reset(client, link)
    assert done.status_code == 302
    location = urlsplit(done.headers["Location"])
    assert (location.path, parse_qs(location.query)) == ("/account/login", {"returnUrl": [pending]})


def test_a_nul_in_the_pending_client_id_is_no_client_to_the_reset(app, client, seeded, mail):
    """PostgreSQL refuses a NUL in a text: the request and the reset audit them with no client."""
    link = reset_link(app, client, mail, return_url="/connect/authorize?client_id=s%00pa&response_type=code")
    assert reset(client, link).status_code == 302
    assert signs_in(client, NEW_PASSWORD)

def test_a_foreign_return_url_is_dropped(app, client, seeded, mail):
    link = reset_link(app, client, mail, return_url="https://evil.example/")
    assert "returnUrl" not in link
    assert reset(client, link).headers["Location"] == "/account/login"


# --- the same answer for every account -----------------------------------------------------


@pytest.mark.parametrize("username", ["nobody", "nobody@example.com", "ALICE@EXAMPLE.COM ", "bob"])
def test_every_request_gets_the_same_page(app, client, flow_clients, mail, username):
    expected = ask(client, "alice")
    answer = ask(client, username)
    assert (answer.status_code, answer.get_data(as_text=True)) == (expected.status_code, expected.get_data(as_text=True))


def test_an_unknown_account_gets_no_mail_and_is_audited(app, client, seeded, mail):
    assert ask(client, "nobody").status_code == 200
    sent(app)
    assert mail.messages == []
    assert [(e[1], e[2]) for e in events(app, "password_reset_requested")] == [(None, {"outcome": "unknown_account"})]
    with app.app_context():
        assert db.session.scalar(select(AccountToken)) is None


def test_an_unknown_account_costs_the_server_the_same_work(app, client, seeded, mail):
    """The server-side work, statement by statement (wall-clock time is noise on a shared machine):
    the same reads and writes, but the one INSERT of the real link; the same token made and
    hashed, the same mail rendered; the SMTP round trip happens after the response either way."""
    ask(client, "alice")  # warm up the worker
    sent(app)
    runs = {}
    for username in ("alice", "nobody"):
        page = client.get("/account/forgot-password")
        data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "username": username}
        with statements(app) as log:
            assert client.post("/account/forgot-password", data=data).status_code == 200
        runs[username] = [s.split()[0] + " " + s.split()[2 if s.startswith(("INSERT", "DELETE")) else 1]
                          if s.split()[0] in ("INSERT", "UPDATE", "DELETE") else s.split()[0] for s in log.pooled]
    known, unknown = runs["alice"], runs["nobody"]
    assert [s for s in known if s != "INSERT account_tokens"] == unknown, runs


def test_an_account_without_an_address_gets_the_same_page(app, client, seeded, mail):
    from identity.services import accounts

    with app.app_context():
        accounts.create_user("noemail", "amber-walnut-thistle-3390")
    assert ask(client, "noemail").status_code == 200
    sent(app)
    assert mail.messages == []
    assert [e[2] for e in events(app, "password_reset_requested")] == [{"outcome": "no_email"}]


# --- the link: once, in time, the newest only ------------------------------------------------


def test_a_link_works_once(app, client, seeded, mail):
    link = reset_link(app, client, mail)
    page = client.get(local(link))
    token = parse_qs(urlsplit(link).query)["token"][0]
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), "token": token,
            "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    assert client.post(local(link), data=form).status_code == 302
    again = client.post(local(link), data={**form, "new_password": "x" + NEW_PASSWORD, "confirm_password": "x" + NEW_PASSWORD})
    assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
    assert again.headers["Referrer-Policy"] == "no-referrer"
    assert client.get(local(link)).status_code == 400
    assert signs_in(app.test_client(), NEW_PASSWORD)
    assert {"reason": "used"} in [e[2] for e in events(app, "password_reset_failed")]


def test_an_expired_link_is_refused(app, client, seeded, mail, monkeypatch):
    link = reset_link(app, client, mail)
    import identity.services.account_tokens as tokens_module

    later = tokens_module.now() + app.config["PASSWORD_RESET_SECONDS"] + 1
    monkeypatch.setattr(tokens_module, "now", lambda: later)
    page = client.get(local(link))
    assert page.status_code == 400 and "expired" in page.get_data(as_text=True)
    assert [e[2] for e in events(app, "password_reset_failed")] == [{"reason": "expired"}]


def test_a_tampered_link_is_refused(app, client, seeded, mail):
    link = reset_link(app, client, mail)
    token = parse_qs(urlsplit(link).query)["token"][0]
    for bad in (token[:-2] + "zz", token + "x", "", "x" * 300):
        page = client.get("/account/reset-password?token=" + bad)
        assert page.status_code == 400 and "not valid" in page.get_data(as_text=True)
    assert client.get("/account/reset-password?token=%00").status_code == 400  # refused before the page (inputs.py)
    page = client.get(local(link))
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), "token": token[:-2] + "zz",
            "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    assert client.post(local(link), data=form).status_code == 400
    assert signs_in(app.test_client(), ALICE_PASSWORD)
    assert reset(client, link).status_code == 302  # the real link still works


def test_a_newer_link_supersedes_the_older(app, client, seeded, mail):
    first = reset_link(app, client, mail)
    second = reset_link(app, client, mail, count=2)
    assert first != second
    assert client.get(local(first)).status_code == 400
    assert reset(client, second).status_code == 302


def test_a_password_change_on_the_page_ends_a_pending_link(app, client, seeded, mail):
    link = reset_link(app, client, mail)
    other = app.test_client()
    other.__class__ = client.__class__
    assert signs_in(other, ALICE_PASSWORD)
    page = other.get("/account/password")
    changed = other.post("/account/password", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "current_password": ALICE_PASSWORD,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert changed.status_code == 200
    assert client.get(local(link)).status_code == 400


def test_a_verified_address_change_ends_a_pending_link(app, client, seeded, mail):
    from test_localapi_support import LocalApi, bearer

    link = reset_link(app, client, mail)
    api = LocalApi(app, app.test_client())
    asked = api.client.put("/localapi/email", headers=bearer(api.token()),
                           json={"email": "alice@new.example.org", "current_password": ALICE_PASSWORD})
    assert asked.status_code == 202
    assert api.client.get(local(mail.link(mail.wait_for(to="alice@new.example.org")))).status_code == 200
    with app.app_context():
        pending = select(AccountToken).where(AccountToken.purpose == "password_reset", AccountToken.used_at.is_(None))
        assert db.session.scalars(pending).all() == []

    page = client.get(local(link))
    assert page.status_code == 400
    assert signs_in(app.test_client(), ALICE_PASSWORD)


def test_a_link_for_an_address_the_account_no_longer_has_is_refused(app, client, seeded, mail):
    """However the address changed (here as the seed or an operator changes it, which ends no
    link), a link mailed to the old one opens nothing: the form already open is refused too."""
    link = reset_link(app, client, mail)
    page = client.get(local(link))
    assert page.status_code == 200
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        user.email, user.email_normalized = "alice@new.example.org", "alice@new.example.org"
        db.session.commit()
    token = parse_qs(urlsplit(link).query)["token"][0]
    posted = client.post(local(link), data={"csrf_token": csrf_token(page.get_data(as_text=True)), "token": token,
                                            "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert posted.status_code == 400 and "no longer has" in posted.get_data(as_text=True)
    assert client.get(local(link)).status_code == 400
    assert signs_in(app.test_client(), ALICE_PASSWORD)
    assert [e[2] for e in events(app, "password_reset_failed")] == [{"reason": "superseded"}] * 2


def test_a_disabled_account_gets_no_link_and_a_pending_one_dies_for_good(app, client, seeded, mail):
    """Whoever holds a reset link of an account the operator disabled would choose the password
    it has when it is enabled again: a disabled account is mailed no link (the same page as for
    anyone), and the disable ends a pending one, which stays dead after `users enable`."""
    from identity.services import user_status

    link = reset_link(app, client, mail)
    mail.clear()
    with app.app_context():
        assert user_status.disable_user("alice").changed
    assert ask(client).status_code == 200
    sent(app)
    assert mail.messages == []
    assert events(app, "password_reset_requested")[-1][2] == {"outcome": "disabled"}
    assert client.get(local(link)).status_code == 400
    with app.app_context():
        assert user_status.enable_user("alice").changed
    assert client.get(local(link)).status_code == 400
    assert post_reset(client, link).status_code == 400
    assert signs_in(app.test_client(), ALICE_PASSWORD)


def post_reset(client, link):
    """The reset form posted for a link whose page no longer opens (the form was open before)."""
    token = parse_qs(urlsplit(link).query)["token"][0]
    csrf = csrf_token(client.get("/account/forgot-password").get_data(as_text=True))
    return client.post(local(link), data={"csrf_token": csrf, "token": token, "new_password": NEW_PASSWORD,
                                          "confirm_password": NEW_PASSWORD})


def test_a_link_of_an_account_disabled_behind_the_services_back_opens_nothing(app, client, seeded, mail):
    """Disabled without the service (a seed file's "enabled": false is written the same way, but
    a direct change is not): the link still opens nothing while the account is disabled."""
    link = reset_link(app, client, mail)
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "alice")).enabled = False
        db.session.commit()
    assert client.get(local(link)).status_code == 400
    assert post_reset(client, link).status_code == 400
    assert [e[2] for e in events(app, "password_reset_failed")] == [{"reason": "disabled"}] * 2


def test_a_refused_password_keeps_the_link_usable(app, client, seeded, mail):
    link = reset_link(app, client, mail)
    weak = reset(client, link, new="password")
    assert weak.status_code == 400 and "at least 15" in weak.get_data(as_text=True).lower().replace("use ", "")
    mismatch = reset(client, link, new=NEW_PASSWORD, confirm=NEW_PASSWORD + "x")
    assert mismatch.status_code == 400 and "does not match" in mismatch.get_data(as_text=True)
    assert reset(client, link).status_code == 302
    assert [e[2] for e in events(app, "password_reset_failed")] == [{"reason": "password_refused"}] * 2


def test_the_new_password_is_hashed_before_the_reset_takes_the_write_lock(app, client, seeded, mail, monkeypatch):
    """The link's use is the reset's first write, and on SQLite the first write takes the
    database's one write lock: the new password's hash (24 ms at production settings) must come
    before it, or every other worker's write waits behind it (as a password change's once did)."""
    with app.app_context():
        dialect, path = db.engine.dialect.name, db.engine.url.database
    if dialect != "sqlite":
        pytest.skip("the database-wide write lock is SQLite's")
    link = reset_link(app, client, mail)
    real_hash, probes = accounts.hash_password, []

    def hash_and_probe(password: str) -> str:
        probes.append(sqlite_write_lock(path))
        return real_hash(password)

    monkeypatch.setattr(accounts, "hash_password", hash_and_probe)
    assert reset(client, link).status_code == 302
    assert probes == ["free"]
    assert signs_in(client, NEW_PASSWORD)
    with app.app_context():
        assert db.session.scalar(select(AccountToken.used_at)) is not None
    assert len(events(app, "password_reset")) == 1


def test_the_reset_form_needs_its_csrf_token(app, client, seeded, mail):
    link = reset_link(app, client, mail)
    token = parse_qs(urlsplit(link).query)["token"][0]
    refused = client.post(local(link), data={"token": token, "new_password": NEW_PASSWORD,
                                              "confirm_password": NEW_PASSWORD})
    assert refused.status_code == 400
    assert signs_in(app.test_client(), ALICE_PASSWORD)


def test_the_reset_form_posts_without_a_referer_over_https(app, client, seeded, mail):
    """The page's no-referrer policy means the browser sends no Referer with its post, which
    Flask-WTF's HTTPS check demands of every other form (the login form here); the reset form
    still needs its CSRF token."""
    login = client.get("/account/login")
    refused = client.post("/account/login", headers={"Referer": ""}, data={
        "csrf_token": csrf_token(login.get_data(as_text=True)), "username": "alice", "password": ALICE_PASSWORD})
    assert refused.status_code == 400
    link = reset_link(app, client, mail)
    page = client.get(local(link))
    token = parse_qs(urlsplit(link).query)["token"][0]
    done = client.post(local(link), headers={"Referer": ""}, data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "token": token,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert done.status_code == 302


# --- lockout, caps and limits ----------------------------------------------------------------


def test_requests_do_not_lock_anyone_out_and_a_reset_clears_the_lock(app, client, seeded, mail):
    for _ in range(app.config["LOCKOUT_MAX_FAILURES"]):
        AuthActions(app.test_client()).login(password="wrong-password-000000")
    assert not signs_in(app.test_client(), ALICE_PASSWORD)  # locked
    with app.app_context():
        assert db.session.scalar(select(User.locked_until).where(User.username == "alice")) > 0
    link = reset_link(app, client, mail)
    assert reset(client, link).status_code == 302
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        assert (user.failed_attempts, user.locked_until) == (0, 0)
    assert signs_in(client, NEW_PASSWORD)


def test_asking_many_times_does_not_lock_the_account(app, client, seeded, mail):
    for _ in range(app.config["LOCKOUT_MAX_FAILURES"] + 2):
        ask(client)
    assert signs_in(client, ALICE_PASSWORD)


@pytest.mark.parametrize("app_config", [{"PASSWORD_RESET_MAILS_PER_HOUR": 2}])
def test_at_most_n_mails_an_hour_per_account_counted_in_the_database(app, client, seeded, mail):
    answers = [ask(client) for _ in range(4)]
    sent(app)
    assert {a.status_code for a in answers} == {200}
    assert len({a.get_data(as_text=True) for a in answers}) == 1
    assert len(mail.to(ALICE_MAIL)) == 2
    outcomes = [e[2]["outcome"] for e in events(app, "password_reset_requested")]
    assert outcomes == ["mailed", "mailed", "mail_limit", "mail_limit"]
    # another worker or instance shares the count: a second app on the same database
    from app import create_app
    from conftest import make_config

    second = create_app(make_config(app.config["SQLALCHEMY_DATABASE_URI"], PASSWORD_RESET_MAILS_PER_HOUR=2))
    second.test_client_class = client.__class__
    assert ask(second.test_client()).status_code == 200
    assert [e[2]["outcome"] for e in events(app, "password_reset_requested")][-1] == "mail_limit"


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_PASSWORD_RESET": "3 per hour",
                                         "RATELIMIT_PASSWORD_RESET_ACCOUNT": "100 per hour"}])
def test_requests_are_rate_limited_per_ip(app, client, seeded, mail):
    statuses = [ask(client, f"user{i}").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True, "RATELIMIT_PASSWORD_RESET": "100 per hour",
                                         "RATELIMIT_PASSWORD_RESET_ACCOUNT": "2 per hour"}])
def test_requests_are_rate_limited_per_target_account_from_any_ip(app, client, seeded, mail):
    assert [forgot_password_from(client, f"10.0.0.{i}", "alice") for i in range(1, 4)] == [200, 200, 429]
    assert forgot_password_from(client, "10.0.0.9", " ALICE ") == 429  # the same account, however written
    assert forgot_password_from(client, "10.0.0.9", "bob") == 200  # another account is not held up


# --- failures and logs ---------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"MAIL_PORT": mail_server.refusing_port()}])  # nothing listens there
def test_smtp_down_same_answer_the_link_is_kept_and_the_failure_audited(app, client, seeded, caplog):
    answer = ask(client)
    assert answer.status_code == 200 and "Check your mail" in answer.get_data(as_text=True)
    sent(app)
    with app.app_context():
        assert db.session.scalar(select(AccountToken.purpose)) == "password_reset"  # the request is not lost
    assert [e[2] for e in events(app, "mail_failed")] == [{"template": "password_reset", "reason": "ConnectionRefusedError"}]
    assert [e[2] for e in events(app, "password_reset_requested")] == [{"outcome": "mailed"}]


def test_the_token_never_reaches_the_logs(app, client, seeded, mail, caplog):
    """Every record at DEBUG (as test_hardening's secrets test), the request log included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="identity")
    link = reset_link(app, client, mail)
    token = parse_qs(urlsplit(link).query)["token"][0]
    reset(client, link)
    client.get(local(link))  # a used link, audited as a failure
    sent(app)
    lines = [r.getMessage() for r in caplog.records if r.name == "identity.requests"]
    assert any('"/account/reset-password"' in line for line in lines), lines
    logged = "\n".join("\n".join([r.getMessage(), repr(r.args), r.exc_text or "", repr(vars(r))]) for r in caplog.records)
    assert not [r.name for r in caplog.records if token in repr(vars(r)) + r.getMessage()]
    assert token not in logged
    with app.app_context():
        audit = repr([(e.event, e.detail, e.client_id) for e in db.session.scalars(select(AuditEvent))])
    assert token not in audit


def test_the_development_servers_request_log_drops_query_strings(caplog):
    from identity.plumbing.headers import QueryStringFilter

    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '%s - - [%s] "%s" %s %s', (
        "127.0.0.1", "now", "GET /account/reset-password?token=SECRET&returnUrl=/x HTTP/1.1", "200", "-"), None)
    assert QueryStringFilter().filter(record)
    assert "SECRET" not in record.getMessage() and "GET /account/reset-password HTTP/1.1" in record.getMessage()

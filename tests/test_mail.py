"""The mail component: both parts from templates, absolute links under the issuer, the
development outbox, a failed send (logged without secrets, audited, False, never raised), and
MAIL_SERVER required in production."""

import email
import email.policy
import logging
import time

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from app import create_app
from identity.extensions import db
from identity.models import AuditEvent
from identity.services import mail as mail_service
from identity.services import mail_transport
from identity.config.startup import ConfigurationError
import mail_server

RESET = dict(name="Alice", username="alice", lifetime="30 minutes")


def _events(app, name):
    with app.app_context():
        found = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))
        db.session.remove()
        return found


def test_a_mail_has_a_text_and_an_html_part_and_an_absolute_link(app, mail):
    with app.test_request_context("/", base_url="https://id.example.com"):
        link = mail_service.link("/account/reset-password", token="t0k3n")
        assert mail_service.send("alice@example.com", "password_reset", user_id=None, link=link, **RESET) is True

    message = mail.wait_for(to="alice@example.com")
    assert message["Subject"] == "Reset your Portcullis Identity password"
    assert message["From"] == "Portcullis Identity <no-reply@id.example.com>"
    assert mail.link(message) == "https://id.example.com/account/reset-password?token=t0k3n"
    assert 'href="https://id.example.com/account/reset-password?token=t0k3n"' in mail.html(message)
    assert [e.detail for e in _events(app, "mail_sent")] == [{"template": "password_reset"}]


@pytest.mark.parametrize("app_config", [{"ISSUER": "https://login.example.org/tenant",
                                         "MAIL_DEFAULT_SENDER": "Example <id@example.org>"}])
def test_links_follow_the_configured_issuer_even_outside_a_request(app, mail):
    with app.app_context():
        link = mail_service.link("/account/reset-password", token="x")
        assert mail_service.send("bob@example.com", "password_reset", link=link, **RESET)
    message = mail.wait_for(to="bob@example.com")
    assert mail.link(message) == "https://login.example.org/tenant/account/reset-password?token=x"
    assert message["From"] == "Example <id@example.org>"


def test_send_later_hands_the_mail_to_the_sender_thread_when_the_request_ends(app, mail):
    with app.test_request_context("/", base_url="https://id.example.com"):
        mail_service.send_later("carol@example.com", "password_reset", link=mail_service.link("/x"), **RESET)
        assert mail_service.wait_until_sent()  # nothing queued yet: the request is still being served
        assert mail.messages == []
    with app.app_context():
        assert mail_service.wait_until_sent()
    assert mail.wait_for(to="carol@example.com", timeout=1)["Subject"].startswith("Reset")


def test_an_apps_sender_stops_once_its_queue_is_sent(app, mail):
    """An app done with while its process goes on (each test's) ends its sender thread: each
    polled its queue ten times a second for the rest of the test session, hundreds per test
    worker, and every test that hands work between threads waited on them (one took 216 s in a
    CI run where it takes 0.1 s alone). What was queued is sent first."""
    with app.test_request_context("/", base_url="https://id.example.com"):
        mail_service.send_later("carol@example.com", "password_reset", link=mail_service.link("/x"), **RESET)
    sender = app.extensions["identity_mail_sender"]
    assert sender.thread.is_alive()
    mail_service.stop_sender(app)
    assert not sender.thread.is_alive() and "identity_mail_sender" not in app.extensions
    assert mail.wait_for(to="carol@example.com", timeout=1)["Subject"].startswith("Reset")
    with app.test_request_context("/", base_url="https://id.example.com"):  # a later mail starts a new one
        mail_service.send_later("dave@example.com", "password_reset", link=mail_service.link("/y"), **RESET)
    assert app.extensions["identity_mail_sender"].thread.is_alive()
    assert mail.wait_for(to="dave@example.com", timeout=2)["Subject"].startswith("Reset")


@pytest.mark.parametrize("app_config", [{"MAIL_PORT": mail_server.refusing_port()}])  # nothing listens there
def test_a_failed_send_is_logged_audited_and_reported_never_raised(app, caplog):
    caplog.set_level(logging.WARNING, logger="identity.mail")
    with app.test_request_context("/", base_url="https://id.example.com"):
        sent = mail_service.send("alice@example.com", "password_reset", user_id=None,
                                 link=mail_service.link("/account/reset-password", token="SECRET-TOKEN"), **RESET)
    assert sent is False
    [failed] = _events(app, "mail_failed")
    assert failed.detail == {"template": "password_reset", "reason": "ConnectionRefusedError"}
    assert "password_reset" in caplog.text and "ConnectionRefusedError" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text and "alice@example.com" not in caplog.text


def test_a_broken_template_is_a_failed_send_not_an_error(app):
    with app.test_request_context("/"):
        assert mail_service.send("alice@example.com", "no_such_template") is False
    assert [e.detail["reason"] for e in _events(app, "mail_failed")] == ["TemplateNotFound"]


def test_development_without_a_mail_server_writes_eml_files_to_the_outbox(instance):
    app = create_app({"TESTING": True, "ENVIRONMENT": "development", "MAIL_SERVER": None,
                      "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "t.db")})
    assert mail_service.outbox_path(app) == str(instance / "outbox")
    with app.test_request_context("/", base_url="http://127.0.0.1:5000"):
        assert mail_service.send("alice@example.com", "password_reset", user_id=None,
                                 link=mail_service.link("/account/reset-password", token="abc"), **RESET) is True
    [path] = (instance / "outbox").glob("*.eml")
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds a live link
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "alice@example.com"
    assert "http://127.0.0.1:5000/account/reset-password?token=abc" in message.get_body(("plain",)).get_content()
    assert message.get_body(("html",)) is not None


def test_production_requires_a_mail_server(instance):
    config = {"TESTING": True, "SECRET_KEY": "k" * 32, "ISSUER": "https://id.example.com",
              "KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(), "MAIL_SERVER": None,
              "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "t.db")}
    with pytest.raises(ConfigurationError) as err:
        create_app(config)
    assert "MAIL_SERVER is required in production: set FLASK_MAIL_SERVER" in str(err.value)
    assert "\n" not in str(err.value)
    assert create_app({**config, "MAIL_SERVER": "smtp.example.com"}).config["MAIL_SERVER"] == "smtp.example.com"


def test_mail_settings_are_read_from_the_environment(instance, monkeypatch):
    monkeypatch.setenv("FLASK_MAIL_SERVER", "smtp.example.com")
    monkeypatch.setenv("FLASK_MAIL_PORT", "587")
    monkeypatch.setenv("FLASK_MAIL_USE_TLS", "true")
    app = create_app({"TESTING": True, "ENVIRONMENT": "development",
                      "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "t.db")})
    with app.app_context():
        state = mail_transport.settings(app)
    assert (state.server, state.port, state.use_tls, state.use_ssl, state.suppress) == ("smtp.example.com", 587, True, False, False)
    assert mail_service.outbox_path(app) is None


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (an SMTP server that hangs)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    yield listener.getsockname()[1]
    listener.close()


def test_a_hanging_smtp_server_fails_the_mail_after_the_timeout(app, silent_server):
    app.config.update(MAIL_PORT=silent_server, MAIL_TIMEOUT_SECONDS=0.5)
    mail_service.init_app(app)  # Flask-Mail reads its settings once
    started = time.monotonic()
    with app.test_request_context("/"):
        assert mail_service.send("alice@example.com", "password_reset", link="x", **RESET) is False
    assert time.monotonic() - started < 30  # without a timeout it would wait forever
    [failed] = _events(app, "mail_failed")
    # smtplib reports a read that timed out as the server having disconnected
    assert failed.detail["reason"] in ("TimeoutError", "SMTPServerDisconnected")


class _SlowInbox(mail_server.Inbox):
    """An inbox whose server takes `delay` seconds to accept each recipient (a slow relay)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        import asyncio

        await asyncio.sleep(self.delay)
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.mark.server
@pytest.mark.parametrize("server_kind", ["gunicorn", "granian"])
def test_a_mail_queued_when_the_server_stops_is_still_sent(tmp_path, server_kind):
    """The mail of a request leaves from the worker's sender thread after the answer. A worker
    stopped then (SIGTERM: a deploy, a reload, a recycle after max_requests) ended with that
    daemon thread: the person had been told "check your email", and the reset link or the
    security notice never left, nor was its failure audited. The worker now waits for its
    queue (within MAIL_TIMEOUT_SECONDS a mail) before it exits."""
    import requests
    from aiosmtpd.controller import Controller

    from bench.server import free_port
    from servers import SERVERS, csrf_from, seeded_server

    inbox = _SlowInbox(delay=1.5)
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        seed = {"users": [{"username": "alice", "email": "alice@example.com", "password": "tulip-quartz-harbor-917"}]}
        with seeded_server(tmp_path, seed, name=f"mail-{server_kind}", server=SERVERS[server_kind],
                           env={"FLASK_MAIL_PORT": str(smtp.port)}) as server:
            browser = requests.Session()
            page = browser.get(server.url + "/account/forgot-password")
            asked = browser.post(server.url + "/account/forgot-password",
                                 data={"csrf_token": csrf_from(page.text), "username": "alice"})
            assert asked.status_code == 200
            time.sleep(0.3)  # the sender thread has taken the mail and is talking to the relay
            server.stop()
        deadline = time.monotonic() + 5
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [m["X-Envelope-To"] for m in inbox.messages] == ["alice@example.com"]
    finally:
        smtp.stop()

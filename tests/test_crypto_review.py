"""A cryptographer's review: secrets at rest, their generation, comparison and exposure."""

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from app import create_app
from identity.config.startup import ConfigurationError
from identity.extensions import db
from identity.models import AuditEvent

KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()


def make(instance, **config):
    base = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "test.db"),
            "KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY, "ISSUER": "https://id.example.test",
            "MAIL_SERVER": "smtp.example.test"}
    return create_app({**base, **config})


# --- SECRET_KEY ---------------------------------------------------------------------------------


@pytest.mark.database_independent
def test_an_empty_development_secret_key_file_is_named_not_called_a_production_requirement(instance):
    """Two processes starting at once in development: the second finds the file the first has made
    and not yet written (or an operator emptied it). It said 'SECRET_KEY is required in production'
    to a development server, naming nothing to fix."""
    (instance / "secret_key").write_text("")
    with pytest.raises(ConfigurationError) as refused:
        make(instance, ENVIRONMENT="development")
    assert "secret_key is empty" in str(refused.value), str(refused.value)
    assert "production" not in str(refused.value)


@pytest.mark.database_independent
@pytest.mark.parametrize("fallbacks", ['["secret"]', '["' + "s" * 40 + '", "changeme"]'])
def test_production_refuses_a_short_secret_key_fallback(instance, monkeypatch, fallbacks):
    """A session cookie signed with any SECRET_KEY_FALLBACKS entry is taken as one signed with
    SECRET_KEY (Flask, plumbing/signed_cookie.py): a short one is as guessable offline as a short
    SECRET_KEY, which production refuses."""
    monkeypatch.setenv("FLASK_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("FLASK_SECRET_KEY_FALLBACKS", fallbacks)
    with pytest.raises(ConfigurationError, match="SECRET_KEY_FALLBACKS"):
        make(instance)


@pytest.mark.database_independent
def test_a_long_secret_key_fallback_still_opens_a_session_cookie(instance, monkeypatch):
    """The rotation the check must not break: a cookie signed with the old key is still read."""
    old = "o" * 40
    monkeypatch.setenv("FLASK_SECRET_KEY", "n" * 40)
    monkeypatch.setenv("FLASK_SECRET_KEY_FALLBACKS", f'["{old}"]')
    app = make(instance)
    signer = Flask("old")
    signer.secret_key = old
    cookie = app.session_interface.get_signing_serializer(signer).dumps({"probe": "old key"})
    assert app.session_interface.get_signing_serializer(app).loads(cookie) == {"probe": "old key"}


@pytest.mark.database_independent
def test_a_secret_key_fallback_given_as_plain_text_is_one_key_not_one_per_character(instance, monkeypatch):
    """FLASK_SECRET_KEY_FALLBACKS=OLDKEY (as FLASK_SECRET_KEY is given, not JSON) reached Flask as a
    string, which extends its key list character by character: a session cookie signed with the
    one-character key "o" was taken."""
    old = "o" * 40
    monkeypatch.setenv("FLASK_SECRET_KEY", "n" * 40)
    monkeypatch.setenv("FLASK_SECRET_KEY_FALLBACKS", old)
    app = make(instance)
    serializer = app.session_interface.get_signing_serializer(app)
    for key in ("o", old):
        signer = Flask("forger")
        signer.secret_key = key
        cookie = app.session_interface.get_signing_serializer(signer).dumps({"_user_id": "forged"})
        opened = serializer.loads_unsafe(cookie)[0]
        assert opened is (key == old), f"a cookie signed with {key!r} opened: {opened}"


# --- mail: reset links and the SMTP login travel over TLS -------------------------------------------


@pytest.fixture(scope="module")
def smtp_certificate(tmp_path_factory):
    from crypto_review_support import self_signed_certificate

    return self_signed_certificate(tmp_path_factory.mktemp("smtp"))


@pytest.fixture(scope="module", params=["ssl", "starttls"])
def tls_mail_server(request, smtp_certificate):
    from crypto_review_support import TlsMailServer

    server = TlsMailServer(*smtp_certificate, implicit=request.param == "ssl").start()
    server.setting = "MAIL_USE_SSL" if request.param == "ssl" else "MAIL_USE_TLS"
    yield server
    server.stop()


def _send_reset_mail(app, server) -> bool:
    from identity.services import mail as mail_service

    app.config.update(MAIL_PORT=server.port, **{server.setting: True})
    mail_service.init_app(app)  # Flask-Mail reads its settings once
    with app.test_request_context("/"):
        return mail_service.send("alice@example.com", "password_reset", link="https://id.example/reset?token=t0k3n",
                                 name="Alice", username="alice", lifetime="30 minutes")


def test_mail_is_not_sent_to_a_server_whose_certificate_nobody_trusts(app, tls_mail_server, monkeypatch):
    """MAIL_USE_SSL / MAIL_USE_TLS promise TLS, and the mail carries password-reset links (and the
    login, MAIL_PASSWORD): smtplib without an SSL context checks neither the certificate nor the
    host name, so anyone on the path who answered with a certificate of their own read them all."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    tls_mail_server.inbox.clear()
    sent = _send_reset_mail(app, tls_mail_server)
    delivered = tls_mail_server.inbox.messages
    assert not delivered, f"a reset link went to an unverified TLS server ({tls_mail_server.setting}); send said {sent}"
    assert sent is False
    with app.app_context():
        reasons = [e.detail["reason"] for e in db.session.scalars(select(AuditEvent).where(AuditEvent.event == "mail_failed"))]
        db.session.remove()
    assert reasons == ["SSLCertVerificationError"], reasons


def test_mail_is_sent_to_a_server_whose_certificate_is_trusted(app, tls_mail_server, smtp_certificate, monkeypatch):
    """The same server, its certificate trusted (SSL_CERT_FILE, as for a private CA): the mail leaves."""
    monkeypatch.setenv("SSL_CERT_FILE", smtp_certificate[0])
    tls_mail_server.inbox.clear()
    assert _send_reset_mail(app, tls_mail_server) is True
    assert tls_mail_server.inbox.wait_for(to="alice@example.com")

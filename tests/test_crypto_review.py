"""A cryptographer's review: secrets at rest, their generation, comparison and exposure."""

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from app import create_app
from identity.config.startup import ConfigurationError

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

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

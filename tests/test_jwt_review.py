"""Signing keys and JWTs, third review: what the key ring, KEY_ENCRYPTION_KEY and the bearer
endpoints still did wrong (each test was seen failing on the code before its fix)."""

import pytest
from cryptography.fernet import Fernet

from identity.extensions import db

from mfa_actions import enrol_user, sign_in_with_code, step_clock  # noqa: F401  (the fixture)
from test_keys import same_database_app


def _dispose(app) -> None:
    with app.app_context():
        db.engine.dispose()


# --- KEY_ENCRYPTION_KEY ----------------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()}])
def test_an_authenticator_app_survives_the_documented_key_encryption_key_rotation(app, seeded, app_config, step_clock):
    """docs/signing-keys.md's three steps (new key first, `keys reencrypt`, the old key dropped):
    the TOTP secrets KEY_ENCRYPTION_KEY also encrypts must be moved under the new key too, or every
    user with an authenticator app is refused (a 500) once the old key is dropped."""
    old_kek, new_kek = app_config["KEY_ENCRYPTION_KEY"], Fernet.generate_key().decode()
    secret, _ = enrol_user(app)

    both = same_database_app(app, KEY_ENCRYPTION_KEY=[new_kek, old_kek])
    try:
        with both.app_context():
            result = both.test_cli_runner().invoke(args=["keys", "reencrypt"])
        assert result.exit_code == 0, result.output
    finally:
        _dispose(both)

    only_new = same_database_app(app, KEY_ENCRYPTION_KEY=new_kek, SESSION_COOKIE_SECURE=False)
    try:
        response = sign_in_with_code(only_new.test_client(), secret)
        assert response.status_code == 302, response.status_code
    finally:
        _dispose(only_new)

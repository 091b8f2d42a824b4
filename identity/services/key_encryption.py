"""Private signing keys at rest: Fernet (AES-128-CBC + HMAC-SHA256) under KEY_ENCRYPTION_KEY.

KEY_ENCRYPTION_KEY is a list, newest first: a stored key decrypts with any of them and is
always encrypted with the first, so a new KEK is put in front, `flask --app app keys reencrypt`
moves every stored key under it, and the old one can then be dropped (docs/signing-keys.md).
Rows written before encryption hold the JSON itself; `is_plaintext` tells them apart (a Fernet
token never starts with "{").
"""

from cryptography.fernet import InvalidToken, MultiFernet, Fernet
from flask import current_app

from ..config.startup import require


class UndecryptableKey(RuntimeError):
    """No configured KEY_ENCRYPTION_KEY opens a stored key."""


def _cipher() -> MultiFernet:
    keys = current_app.config["KEY_ENCRYPTION_KEY"]  # made a list by settings.py; required to serve
    if not keys:  # an operator's command in production without it: one line naming the setting
        require(current_app, "KEY_ENCRYPTION_KEY")
    cached = current_app.extensions.get("identity_key_encryption")
    if cached is None or cached[0] != keys:
        cached = current_app.extensions["identity_key_encryption"] = (list(keys), MultiFernet([Fernet(k) for k in keys]))
    return cached[1]


def is_plaintext(stored: str) -> bool:
    return stored.lstrip().startswith("{")


def encrypt(private_jwk: str) -> str:
    return _cipher().encrypt(private_jwk.encode()).decode("ascii")


def decrypt(stored: str, what: str) -> str:
    """The private JWK (JSON) of a stored key, plaintext rows included, or another stored secret;
    `what` names it in the error ("signing key KID", "the authenticator app secret of user 1")."""
    if is_plaintext(stored):
        return stored
    try:
        return _cipher().decrypt(stored.encode("ascii")).decode()
    except (InvalidToken, ValueError, UnicodeError):
        raise UndecryptableKey(
            f"{what} cannot be decrypted with any KEY_ENCRYPTION_KEY: "
            "keep the key it was encrypted with in the list until `keys reencrypt` has run") from None


def reencrypt(stored: str, what: str) -> str:
    """The stored secret encrypted under the first KEK (plaintext rows are encrypted)."""
    return encrypt(decrypt(stored, what))


def signing_key_label(kid: str) -> str:
    """How an error names a stored signing key."""
    return f"signing key {kid}"


def totp_label(user_id: int) -> str:
    """How an error names a user's authenticator app secret."""
    return f"the authenticator app secret of user {user_id}"

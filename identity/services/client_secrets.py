"""Client secrets: stored only as hashes, yet verified in microseconds.

Generated secrets carry 256 bits of entropy, so a single SHA-256 is as safe for them as a
slow hash (IdentityServer does the same): `sha256$<hex>`. Operator-chosen secrets may be
weak, so they get Argon2id; a verified (stored hash, SHA-256 of the presented secret) pair
is remembered in-process, so the slow hash is paid once per worker, not per request.
A changed secret changes the stored hash, which misses the cache.
"""

import hashlib
import hmac
import secrets
from collections import OrderedDict
from threading import Lock

from ..extensions import db
from . import audit
from .passwords import even_out_failure, hash_password, verify_password

_FAST_PREFIX = "sha256$"
_CACHE_SIZE = 4096
_verified: "OrderedDict[tuple[str, bytes], bool]" = OrderedDict()
_lock = Lock()


def generate_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_client_secret(secret: str, *, generated: bool = False) -> str:
    """Hash a secret: fast SHA-256 when we generated it, Argon2id when a person chose it."""
    if generated:
        return _FAST_PREFIX + hashlib.sha256(secret.encode()).hexdigest()
    return hash_password(secret)


def verify_client_secret(stored_hashes: list[str], presented: str) -> bool:
    """True when the presented secret matches one of the stored hashes."""
    digest = hashlib.sha256(presented.encode()).digest()
    for stored in stored_hashes:
        if stored.startswith(_FAST_PREFIX):
            if hmac.compare_digest(stored[len(_FAST_PREFIX):], digest.hex()):
                return True
            continue
        key = (stored, digest)
        with _lock:
            if _verified.get(key):
                _verified.move_to_end(key)
                return True
        if verify_password(stored, presented):
            with _lock:
                _verified[key] = True
                if len(_verified) > _CACHE_SIZE:
                    _verified.popitem(last=False)
            return True
    return False


def verify_client_secret_evenly(stored_hashes: list[str], presented: str) -> bool:
    """verify_client_secret, where a failure always costs at least one Argon2 verification at
    the current cost (the ARGON2_* settings).

    An unknown, disabled or public client, and one with only generated (SHA-256) secrets, would
    otherwise fail in microseconds while a client with an Argon2 secret takes milliseconds: the
    time of a failed attempt would tell which client ids exist. So would a client whose Argon2
    secrets were hashed at a lower cost (a secret keeps the cost it was hashed with; the settings
    may have been raised since): it pays the verification at the current cost too. (A client
    with several Argon2 secrets still costs one verification per secret, and one whose secret
    was hashed at a higher cost than the current one costs that.)
    """
    if verify_client_secret(stored_hashes, presented):
        return True
    even_out_failure(stored_hashes, presented)  # a SHA-256 secret costs nothing: not at the current cost
    return False


def record_failed_authentication(client_id: str | None, method: str, endpoint: str) -> None:
    """Audit a failed client authentication (`client_auth_failed`: the client id as sent, the
    method and the endpoint; never the secret), committed: an authentication decision, as a
    user's failed sign-in is (ASVS 4.0.3, 7.2.1)."""
    audit.record("client_auth_failed", client_id=client_id, detail={"method": method, "endpoint": endpoint})
    db.session.commit()

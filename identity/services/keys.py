"""Signing keys: created on first use, stored in the database, cached per worker.

Every worker and instance reads the same `signing_keys` table, so they all sign with the
same current key and publish the same JWKS. A worker re-reads the table at most every
SIGNING_KEY_RELOAD_SECONDS, and at once (at most once a second) when it meets an unknown kid.
"""

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field

from flask import current_app
from joserfc.jwk import ECKey, JWKRegistry, RSAKey
from sqlalchemy import or_, select

from ..clock import now
from ..extensions import db
from ..models import SigningKey
from . import audit

SUPPORTED_ALGS = ("RS256", "ES256")


def _generate(alg: str):
    params = {"alg": alg, "use": "sig"}
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=params, auto_kid=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, auto_kid=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


@dataclass
class KeyRing:
    """One worker's view of the key table."""

    loaded_at: float = 0.0
    forced_at: float = 0.0
    by_kid: dict = field(default_factory=dict)  # kid -> joserfc key (published ones)
    current: dict = field(default_factory=dict)  # alg -> joserfc key
    jwks_body: bytes = b'{"keys":[]}'
    etag: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ring() -> KeyRing:
    return current_app.extensions.setdefault("identity_keyring", KeyRing())


def _published_rows() -> list[SigningKey]:
    window_start = now() - current_app.config["SIGNING_KEY_RETIRED_PUBLISH_SECONDS"]
    stmt = (
        select(SigningKey)
        .where(or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > window_start))
        .order_by(SigningKey.id)
    )
    return list(db.session.scalars(stmt))


def _load(ring: KeyRing) -> None:
    rows = _published_rows()
    by_kid, current = {}, {}
    for row in rows:
        key = ring.by_kid.get(row.kid) or JWKRegistry.import_key(json.loads(row.private_jwk))
        by_kid[row.kid] = key
        if row.retired_at is None:
            current[row.alg] = key  # ordered by id: the newest wins
    public = [
        {**k.as_dict(private=False), "kid": kid, "alg": k.alg or _alg_of(rows, kid), "use": "sig"}
        for kid, k in by_kid.items()
    ]
    body = json.dumps({"keys": public}, separators=(",", ":"), sort_keys=True).encode()
    if set(by_kid) != set(ring.by_kid):
        # a key left (or joined) the published set: forget tokens verified with the old set
        current_app.extensions.pop("identity_verified_tokens", None)
    ring.by_kid, ring.current, ring.jwks_body = by_kid, current, body
    ring.etag = hashlib.sha256(body).hexdigest()[:32]
    ring.loaded_at = _monotonic()


def _alg_of(rows, kid):
    return next(r.alg for r in rows if r.kid == kid)


def _monotonic() -> float:
    return time.monotonic()


def _fresh_ring() -> KeyRing:
    ring = _ring()
    if _monotonic() - ring.loaded_at > current_app.config["SIGNING_KEY_RELOAD_SECONDS"]:
        with ring.lock:
            _load(ring)
    return ring


def create_key(alg: str) -> SigningKey:
    """Create and commit a new current key for `alg`."""
    key = _generate(alg)
    row = SigningKey(
        kid=key.kid, alg=alg, private_jwk=json.dumps(key.as_dict(private=True)), created_at=now()
    )
    db.session.add(row)
    db.session.commit()
    return row


def signing_key(alg: str):
    """Return the current key for `alg`, creating it on first use."""
    ring = _fresh_ring()
    key = ring.current.get(alg)
    if key is None:
        create_key(alg)
        with ring.lock:
            _load(ring)
        key = ring.current[alg]
    return key


def verification_key(kid: str):
    """Return the published key with this kid, or None; reloads once for an unknown kid."""
    ring = _fresh_ring()
    key = ring.by_kid.get(kid)
    if key is None and _monotonic() - ring.forced_at > 1.0:
        with ring.lock:
            ring.forced_at = _monotonic()
            _load(ring)
        key = ring.by_kid.get(kid)
    return key


def jwks() -> tuple[bytes, str]:
    """Return the public JWKS document and its ETag, ensuring the configured keys exist."""
    for alg in configured_algs():
        signing_key(alg)
    ring = _fresh_ring()
    return ring.jwks_body, ring.etag


def configured_algs() -> list[str]:
    """The algorithms we keep a current key for: the configured ones, and RS256, which OpenID
    Connect requires every provider to support (discovery always advertises it)."""
    cfg = current_app.config
    return sorted({"RS256", cfg["ID_TOKEN_SIGNING_ALG"], cfg["ACCESS_TOKEN_SIGNING_ALG"]})


def rotate(algs: list[str] | None = None) -> list[SigningKey]:
    """Retire the current keys and create new ones; retired keys stay published for a while."""
    algs = algs or configured_algs()
    stamp = now()
    for row in db.session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None), SigningKey.alg.in_(algs))):
        row.retired_at = stamp
    created = []
    for alg in algs:
        key = _generate(alg)
        row = SigningKey(kid=key.kid, alg=alg, private_jwk=json.dumps(key.as_dict(private=True)), created_at=stamp)
        db.session.add(row)
        created.append(row)
    audit.record("key_rotated", detail={"kids": [r.kid for r in created]})
    db.session.commit()
    ring = _ring()
    with ring.lock:
        _load(ring)
    return created


def list_keys() -> list[tuple[SigningKey, bool]]:
    """Return every key with whether it is still published."""
    published = {r.kid for r in _published_rows()}
    rows = db.session.scalars(select(SigningKey).order_by(SigningKey.id))
    return [(r, r.kid in published) for r in rows]


def has_current_key() -> bool:
    ring = _fresh_ring()
    return all(alg in ring.current for alg in configured_algs())

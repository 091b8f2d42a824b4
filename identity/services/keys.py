"""Signing keys: encrypted in the database, rotated on a schedule every instance agrees on,
cached per worker.

A key's life (one `signing_keys` row): it is published in the JWKS from `created_at`, signs
from `activates_at` until its successor activates (`retired_at`), and stays published
SIGNING_KEY_RETENTION_SECONDS after that, so tokens it signed keep verifying until they
expire. An emergency rotation (`keys rotate --now`) revokes keys instead: they leave the JWKS
at once.

Rotation is staged, as in Duende's automatic key management: once the current key has signed
for SIGNING_KEY_ROTATION_SECONDS minus SIGNING_KEY_PROPAGATION_SECONDS, the first worker to
re-read the table makes its successor, published at once and signing only after the
propagation time, longer than anyone may cache the JWKS. No process coordinates this: every
worker and instance reads the same table and decides the same way, and a new key's
`generation` is unique per algorithm, so when two decide at the same moment one insert fails
and that worker takes the other's key.

A worker re-reads the table at most every SIGNING_KEY_RELOAD_SECONDS, and at once (at most
once a second) when it meets an unknown kid; which of its keys signs is decided at each use,
so a successor takes over at its activation time, not at the next reload. An emergency rotation
waits SIGNING_KEY_RELOAD_SECONDS after its commit before it returns, as `clients disable` waits
out the client snapshots: a ring is as old as the start of its read, so by then every worker's
ring either was read after the commit or is due, and is re-read before its next use.
"""

import hashlib
import json
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from flask import current_app
from joserfc.jwk import ECKey, JWKRegistry, RSAKey
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..clock import now
from ..constants import ACCESS_TOKEN_LIFETIME_MAX
from ..current import current_application
from ..errors import Conflict
from ..store import keys as key_rows
from ..store import mfa as mfa_rows
from . import audit, key_encryption

SUPPORTED_ALGS = ("RS256", "ES256")


def _generate(alg: str):
    params = {"alg": alg, "use": "sig"}
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=params, auto_kid=True)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, auto_kid=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


class KeySet(NamedTuple):
    """The keys of one load of the key table, replaced in one assignment: the worker's other
    threads sign, verify and serve the JWKS without the ring's lock, and must never pair one load's
    published keys with another's signing schedule (a key revoked meanwhile would sign, out of
    the JWKS), nor a JWKS with another's ETag (an RP answered 304 would keep the older set)."""

    by_kid: dict  # kid -> joserfc key (published ones)
    unpublished: dict  # kid -> key retired past its retention, not revoked
    schedule: dict  # alg -> [(generation, activates_at, key)], newest first
    jwks: tuple[bytes, str]  # the public JWKS and its ETag (cached_jwks)


@dataclass
class KeyRing:
    """One worker's view of the key table."""

    # time.monotonic() of the last load and forced reload; -inf: never (monotonic time counts from
    # the host's boot, so 0 is recent on a machine up for less than SIGNING_KEY_RELOAD_SECONDS)
    loaded_at: float = -math.inf
    forced_at: float = -math.inf
    keys: KeySet = field(default_factory=lambda: KeySet({}, {}, {}, (b'{"keys":[]}', "")))
    provisional: bool = False  # loaded with keys the request has not committed: reload at next use
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ring() -> KeyRing:
    extensions = current_application().extensions
    ring = extensions.get("identity_keyring")  # no KeyRing built per call: a hot path
    return ring if ring is not None else extensions.setdefault("identity_keyring", KeyRing())


def _all_rows() -> list:
    return key_rows.all_keys()


def _is_published(row, stamp: int) -> bool:
    retention = current_app.config["SIGNING_KEY_RETENTION_SECONDS"]
    return row.revoked_at is None and (row.retired_at is None or row.retired_at + retention > stamp)


def _unretired(row, stamp: int) -> bool:
    """Neither revoked nor retired at `stamp`: a key that may still be its algorithm's current one."""
    return row.revoked_at is None and (row.retired_at is None or row.retired_at > stamp)


def _state(row, stamp: int) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if not _is_published(row, stamp):
        return "expired"
    if row.activates_at > stamp:
        return "pending"
    if row.retired_at is not None and row.retired_at <= stamp:
        return "published"
    return "current"


# --- deciding and writing ------------------------------------------------------------------------


def _signs_while_retired(row, stamp: int) -> bool:
    """Whether a key retired without a successor (its algorithm no longer configured, by an
    instance that runs with the new setting) still signs here, where the algorithm is configured
    (an instance not yet updated, or the setting put back): while it stays published for longer
    than any token it signs now lives. Making a new key instead, which the updated instances
    retire at their next read, made a new key every SIGNING_KEY_RELOAD_SECONDS while both ran."""
    return (row.revoked_at is None and row.retired_at is not None and row.activates_at <= stamp
            and row.retired_at + current_app.config["SIGNING_KEY_RETENTION_SECONDS"] - stamp > _longest_token())


def _longest_token() -> int:
    """How long a token signed now may be accepted: the longest lifetime plus the leeway."""
    cfg = current_app.config
    return max(cfg["ID_TOKEN_LIFETIME_SECONDS"], ACCESS_TOKEN_LIFETIME_MAX) + cfg["JWT_LEEWAY_SECONDS"]


def _plan(rows, alg: str, stamp: int, *, scheduled: bool):
    """(generation, activates_at, predecessor row) of the key to make for `alg`, or None.

    The first key signs at once (no token or cached JWKS predates it). The operator's staged
    rotation publishes the successor of a key retired with no successor that still signs
    (_signs_while_retired) first too. Otherwise nothing is made while a successor waits; `scheduled` makes one only when the current key is due, to sign at
    the end of its interval (or after the propagation time, if the service was off meanwhile);
    the operator's staged rotation makes one now, to sign after the propagation time.
    """
    cfg = current_app.config
    mine = [r for r in rows if r.alg == alg]
    generation = max((r.generation for r in mine), default=0) + 1
    active = [r for r in mine if _unretired(r, stamp) and r.activates_at <= stamp]  # a retired key is no one's current key
    current = max(active, key=lambda r: r.generation, default=None)
    propagation = cfg["SIGNING_KEY_PROPAGATION_SECONDS"]
    if current is None:
        signing = [r for r in mine if _signs_while_retired(r, stamp)]
        if scheduled and signing:
            return None
        if not signing:
            return generation, stamp, None
        # the operator's staged rotation while a key retired with no successor still signs here (its
        # algorithm set back): published first, as any staged successor, it signs after the
        # propagation time, or when the retired key must stop (`ends`: later, a token it signed
        # would outlive its place in the JWKS), if that comes first
        last = max(signing, key=lambda r: r.generation)
        if any(r.revoked_at is None and r.retired_at is None and r.generation > last.generation for r in mine):
            return None
        ends = last.retired_at + cfg["SIGNING_KEY_RETENTION_SECONDS"] - _longest_token()
        return generation, max(stamp, min(ends, stamp + propagation)), None
    if any(r.revoked_at is None and r.generation > current.generation for r in mine):
        return None
    if not scheduled:
        return generation, stamp + propagation, current
    due = current.activates_at + cfg["SIGNING_KEY_ROTATION_SECONDS"]
    if stamp < due - propagation:
        return None
    return generation, max(due, stamp + propagation), current


def _insert(writer, key, alg: str, generation: int, activates_at: int, stamp: int, predecessor=None) -> None:
    writer.add(kid=key.kid, alg=alg, generation=generation, activates_at=activates_at, created_at=stamp,
               private_jwk=key_encryption.encrypt(json.dumps(key.as_dict(private=True))),
               retires=None if predecessor is None else predecessor.id)


@contextmanager
def _key_transaction():
    """Key writes in a transaction of their own (store/keys.py); a provisional one (SQLite,
    inside the request's transaction) makes the ring reload once the request has committed."""
    with key_rows.key_writes() as writer:
        yield writer
    if writer.provisional:
        _ring().provisional = True


def _maintain(rows, stamp: int) -> bool:
    """Make the keys the schedule asks for (first keys, due successors), and retire the keys of an
    algorithm no longer configured; True if any was due."""
    due = _retire_unconfigured(rows, stamp)
    for alg in configured_algs():
        plan = _plan(rows, alg, stamp, scheduled=True)
        if plan is None:
            continue
        due = True
        key = _generate(alg)  # before the transaction: an RSA key takes a good fraction of a second
        generation, activates_at, predecessor = plan
        try:
            with _key_transaction() as writer:
                _insert(writer, key, alg, generation, activates_at, stamp, predecessor)
                if predecessor is not None:
                    writer.run(audit.event_write("key_rotated", detail={
                        "kids": [key.kid], "reason": "scheduled", "activates_at": activates_at}))
        except IntegrityError:
            if not any(row.alg == alg and row.generation == generation for row in _all_rows()):
                raise  # nobody made this generation: the database refused the key (a 503, not "no key")
            # another worker or instance made this generation first: the reload takes theirs
    return due


def _retire_unconfigured(rows, stamp: int) -> bool:
    """Retire the keys of an algorithm no longer configured (ACCESS_TOKEN_SIGNING_ALG changed): they
    sign nothing here, and would otherwise stay published for good. Retired, they stay in the JWKS
    for the retention time, so the tokens they signed verify until they expire. True if any was."""
    algs = sorted({r.alg for r in rows if _unretired(r, stamp)} - set(configured_algs()))
    if not algs:
        return False
    with _key_transaction() as writer:
        if sum(writer.retire_all(alg, stamp) for alg in algs):  # none: another worker was first
            writer.run(audit.event_write("key_retired", detail={"algs": algs, "reason": "not configured"}))
    return True


def _encrypt_plaintext(rows) -> None:
    """Encrypt keys stored in the clear by a version before encryption at rest (once, by
    whichever worker loads them first; the condition on the old value makes racing workers
    harmless). A failure is logged: the plaintext still works, and the next load retries."""
    plain = [r for r in rows if key_encryption.is_plaintext(r.private_jwk)]
    if not plain:
        return
    try:
        with _key_transaction() as writer:
            for row in plain:
                writer.replace_private_jwk(row.id, key_encryption.encrypt(row.private_jwk), if_still=row.private_jwk)
    except SQLAlchemyError as err:
        current_app.logger.warning("could not encrypt %d plaintext signing keys: %s", len(plain), type(err).__name__)
    else:
        current_app.logger.warning("encrypted %d signing keys stored in plaintext", len(plain))


# --- the worker's key ring -----------------------------------------------------------------------


def _load(ring: KeyRing) -> None:
    started, stamp = _monotonic(), now()  # the ring is as old as its read, not its end
    ring.provisional = False
    rows = _all_rows()
    if _maintain(rows, stamp):
        rows = _all_rows()
    _encrypt_plaintext(rows)
    by_kid, unpublished, schedule, algs, known = {}, {}, {}, {}, ring.keys
    for row in rows:
        if row.revoked_at is not None:
            continue
        published = _is_published(row, stamp)
        key = known.by_kid.get(row.kid) or known.unpublished.get(row.kid)
        if key is None:
            try:
                key = JWKRegistry.import_key(
                    json.loads(key_encryption.decrypt(row.private_jwk, key_encryption.signing_key_label(row.kid))))
            except key_encryption.UndecryptableKey:
                if published:
                    raise
                continue  # a key long out of the JWKS is needed only for old hints: never a reason to fail
        if not published:
            unpublished[row.kid] = key
            continue
        by_kid[row.kid], algs[row.kid] = key, row.alg
        schedule.setdefault(row.alg, []).append((row.generation, row.activates_at, key))
    for entries in schedule.values():
        entries.sort(key=lambda entry: entry[0], reverse=True)
    public = [{**k.as_dict(private=False), "kid": kid, "alg": k.alg or algs[kid], "use": "sig"} for kid, k in by_kid.items()]
    body = json.dumps({"keys": public}, separators=(",", ":"), sort_keys=True).encode()
    if set(by_kid) != set(known.by_kid):
        # a key left (or joined) the published set: forget tokens verified with the old set
        from . import tokens  # tokens imports this module

        tokens.forget_verified_tokens()
    ring.keys = KeySet(by_kid, unpublished, schedule, (body, hashlib.sha256(body).hexdigest()[:32]))
    ring.loaded_at = -math.inf if ring.provisional else started


def _monotonic() -> float:
    return time.monotonic()


def _fresh_ring() -> KeyRing:
    ring = _ring()
    if _monotonic() - ring.loaded_at > current_application().config["SIGNING_KEY_RELOAD_SECONDS"]:
        return _loaded(ring)
    return ring


#: how long a request whose transaction holds SQLite's write lock waits for the ring's lock
RING_WAIT_SECONDS = 0.05


def _loaded(ring: KeyRing) -> KeyRing:
    """The ring loaded anew, under its lock; or, when the request's transaction holds SQLite's
    write lock and another thread has held the ring's lock for RING_WAIT_SECONDS, a ring of the
    request's own, loaded in its transaction. That thread may be writing a key (the first one, a
    scheduled successor) on a connection of its own, waiting for the write lock the request holds:
    waiting for it, the request and that thread stood still for the busy timeout, and then the
    key's write failed (a 503)."""
    if ring.lock.acquire(timeout=RING_WAIT_SECONDS if key_rows.holds_sqlite_write_lock() else -1):
        try:
            _load(ring)
        finally:
            ring.lock.release()
        return ring
    own = KeyRing(keys=ring.keys)  # its keys, not decrypted again
    _load(own)  # a key due is written in the request's transaction (store/keys.py: provisional)
    return own


def _current(ring: KeyRing, alg: str):
    stamp = now()
    for _, activates_at, key in ring.keys.schedule.get(alg, ()):
        if activates_at <= stamp:
            return key
    return None


def signing_key(alg: str):
    """Return the key that signs `alg` now, making the first one on first use."""
    ring = _fresh_ring()
    key = _current(ring, alg)
    if key is None:
        ring = _loaded(ring)
        key = _current(ring, alg)
        if key is None:
            raise RuntimeError(f"no {alg} signing key: it is not one of the configured algorithms")
    return key


def verification_key(kid: str):
    """Return the published key with this kid, or None; reloads once for an unknown kid."""
    ring = _fresh_ring()
    key = ring.keys.by_kid.get(kid)
    if key is None and _monotonic() - ring.forced_at > 1.0:
        ring.forced_at = _monotonic()
        key = _loaded(ring).keys.by_kid.get(kid)
    return key


def hint_verification_key(kid: str):
    """The key with this kid for an id_token_hint: a published one, or one retired past the
    retention time but not revoked. An app keeps the ID token of its sign-in as long as its session
    (refresh tokens bring no new one), and sends it to name the user it signs out; that the key
    left the JWKS says nothing against it. A revoked key's tokens are refused here too."""
    key = verification_key(kid)
    return key if key is not None else _fresh_ring().keys.unpublished.get(kid)


def is_published(kid: str) -> bool:
    """Whether the key with this kid is published now, by the worker's ring (re-read when due):
    the check a token verified earlier still passes at each use, without the signature math."""
    return kid in _fresh_ring().keys.by_kid


def jwks() -> tuple[bytes, str]:
    """Return the public JWKS document and its ETag, ensuring the configured keys exist."""
    for alg in configured_algs():
        signing_key(alg)
    return _fresh_ring().keys.jwks


def cached_jwks(app) -> tuple[bytes, str] | None:
    """The JWKS and its ETag as this worker last loaded them, if within SIGNING_KEY_RELOAD_SECONDS;
    else None. Reads no table and needs no app context: for the WSGI layer that serves the JWKS
    without Flask (web/fast_documents.py), which leaves a None to the view (`jwks`)."""
    ring: KeyRing | None = app.extensions.get("identity_keyring")
    if ring is None or _monotonic() - ring.loaded_at >= app.config["SIGNING_KEY_RELOAD_SECONDS"]:
        return None
    jwks = ring.keys.jwks
    return jwks if jwks[1] else None


def configured_algs() -> list[str]:
    """The algorithms we keep a current key for: the configured ones, and RS256, which OpenID
    Connect requires every provider to support (discovery always advertises it)."""
    cfg = current_app.config
    return sorted({"RS256", cfg["ID_TOKEN_SIGNING_ALG"], cfg["ACCESS_TOKEN_SIGNING_ALG"]})


# --- the operator's commands ---------------------------------------------------------------------


def _reload() -> None:
    ring = _ring()
    with ring.lock:
        _load(ring)


def rotate(algs: list[str] | None = None, *, immediate: bool = False) -> list:
    """Start a rotation and return each algorithm's newest key (a plain row).

    Staged (the default): publish a successor now that signs after the propagation time; the
    current key signs until then and stays published for the retention time after. Nothing new
    is made while a successor already waits. Immediate (a compromised key): every key of the
    algorithm is revoked, leaving the JWKS at once, and a new one signs now; this returns
    SIGNING_KEY_RELOAD_SECONDS after its commit, when every worker of every instance re-reads
    the key table before its next use: none signs with a revoked key or accepts a token it signed.
    Without `algs`, an immediate rotation also revokes the keys of an algorithm no longer configured
    (ACCESS_TOKEN_SIGNING_ALG changed): they sign nothing here, but were still published.
    """
    every = algs is None
    algs = algs or configured_algs()
    for _attempt in range(3):
        stamp, rows = now(), _all_rows()
        unconfigured = {r.alg for r in rows if r.revoked_at is None} - set(algs) if immediate and every else set()
        plans = {}
        for alg in algs:
            if immediate:
                plans[alg] = (max((r.generation for r in rows if r.alg == alg), default=0) + 1, stamp, None)
            else:
                plans[alg] = _plan(rows, alg, stamp, scheduled=False)
        made = {alg: _generate(alg) for alg, plan in plans.items() if plan is not None}
        try:
            with _key_transaction() as writer:
                for alg, key in made.items():
                    generation, activates_at, predecessor = plans[alg]
                    if immediate:
                        writer.revoke_all(alg, stamp)
                    _insert(writer, key, alg, generation, activates_at, stamp, predecessor)
                for alg in sorted(unconfigured):
                    writer.revoke_all(alg, stamp)
                if made:
                    writer.run(audit.event_write("key_rotated", detail={
                        "kids": [k.kid for k in made.values()], "reason": "emergency" if immediate else "staged"}))
        except IntegrityError:
            if {row.kid for row in _all_rows()} == {row.kid for row in rows}:
                raise  # no key was made meanwhile: no other rotation, the database refused these keys
            continue  # another instance rotated at the same moment: decide again on what it made
        break
    else:
        raise Conflict("signing keys are being rotated elsewhere; try again")
    key_rows.commit_request()
    _reload()
    if immediate:
        time.sleep(max(0, current_app.config["SIGNING_KEY_RELOAD_SECONDS"]))
    newest = {}
    for row in _all_rows():
        if row.alg in algs and (row.alg not in newest or row.generation > newest[row.alg].generation):
            newest[row.alg] = row
    return [newest[alg] for alg in algs if alg in newest]


def reencrypt() -> tuple[int, int]:
    """Encrypt every stored signing key and authenticator app secret (the other thing
    KEY_ENCRYPTION_KEY encrypts) under the first KEY_ENCRYPTION_KEY, in one transaction; return
    how many of each. Raises key_encryption.UndecryptableKey (and changes nothing) if one cannot be
    opened: once it returns, the other keys of the list can be dropped."""
    rows, secrets = _all_rows(), mfa_rows.encrypted_totp_secrets()
    new = {row.id: key_encryption.reencrypt(row.private_jwk, key_encryption.signing_key_label(row.kid)) for row in rows}
    new_secrets = [(user_id, stored, key_encryption.reencrypt(stored, key_encryption.totp_label(user_id)))
                   for user_id, stored in secrets]
    with key_rows.key_writes() as writer:
        for row in rows:
            writer.replace_private_jwk(row.id, new[row.id])
        for user_id, stored, fresh in new_secrets:
            writer.run(mfa_rows.replace_totp_secret(user_id, fresh, if_still=stored))
        writer.run(audit.event_write("keys_reencrypted", detail={"count": len(rows), "totp_secrets": len(secrets)}))
    return len(rows), len(secrets)


def list_keys() -> list[tuple]:
    """Every key (a plain row) with its state: pending, current, published (retired), expired or revoked."""
    stamp, rows = now(), _all_rows()
    # the key each configured algorithm signs with now, as the ring chooses it (_current): the
    # newest published one that has activated, a retired one too when its algorithm was set back
    # (_signs_while_retired), which is "current" here, not "published"
    signing = {}
    for row in rows:
        if row.alg in configured_algs() and _is_published(row, stamp) and row.activates_at <= stamp:
            if row.alg not in signing or row.generation > signing[row.alg].generation:
                signing[row.alg] = row
    chosen = {row.kid for row in signing.values()}
    return [(row, "current" if row.kid in chosen else _state(row, stamp)) for row in rows]


"""Registered clients: create from validated data, list, remove, find."""

import threading
import time
from collections.abc import Mapping

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..constants import STANDARD_IDENTITY_RESOURCES
from ..current import current_application
from ..errors import Conflict, NotFound, ValidationFailed
from ..extensions import db
from ..models import AuthorizationCode, Client, Consent, RefreshToken, SessionClient, StandaloneAccessToken, User
from ..store import clients as client_rows
from ..store import listing
from ..store import logout as logout_rows
from ..store.scopes import lock_api_scopes
from .input_schemas import ClientSchema, field_errors
from . import audit
from .client_secrets import generate_client_secret, hash_client_secret
from .resources import all_scope_names


def get_client(client_id: str) -> Client | None:
    return db.session.scalar(select(Client).where(Client.client_id == client_id))


MAX_CLIENT_ID_LENGTH = 200  # the column's size


def is_client_id(value) -> bool:
    """Whether a value from a request or a token can name a client at all (a non-empty string
    that fits the column, with no NUL, which PostgreSQL refuses in a text); anything else is
    answered as an unknown client without a lookup."""
    return isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID_LENGTH and "\x00" not in value


def recorded_client_id(value) -> str | None:
    """A client id from a request as an audit event or a session keeps it (cut to the column),
    or None if it cannot name a client."""
    if not isinstance(value, str):
        return None
    value = value[:MAX_CLIENT_ID_LENGTH]
    return value if is_client_id(value) else None


def cached_client(client_id) -> Client | None:
    """A worker's snapshot of a client, re-read after CLIENT_CACHE_SECONDS (detached, read-only);
    None for an unknown client and for anything that is not a client id.

    The token endpoint looks its client up on every request; a snapshot turns that query into a
    dictionary lookup. A changed or removed client takes effect within the cache period. An id
    with no client is not remembered: a client added under it (`clients add`, a seed) is served
    as soon as the command returns, not refused for the period by a worker asked for it before.
    """
    if not is_client_id(client_id):
        return None
    app = current_application()
    ttl = app.config["CLIENT_CACHE_SECONDS"]
    if ttl <= 0:
        return get_client(client_id)
    cache = app.extensions.setdefault("identity_clients", {})
    hit = cache.get(client_id)
    if hit is not None and time.monotonic() - hit[1] < ttl:
        return hit[0]
    # noted before the read: a snapshot read before a change committed is dropped within
    # CLIENT_CACHE_SECONDS of the commit, which is what set_client_enabled waits for
    stamp = time.monotonic()
    row = get_client(client_id)
    if row is None:
        cache.pop(client_id, None)
        return None
    db.session.expunge(row)  # keep its loaded values after the request's session ends
    if len(cache) > 10_000:
        cache.clear()
    cache[client_id] = (row, stamp)
    return row


def cors_origins() -> set[str]:
    """Every origin some enabled client allows CORS from, re-read after CORS_ORIGINS_CACHE_SECONDS.

    The CORS layer asks on every cross-origin request to the browser-facing endpoints; one set
    per worker turns that into a set lookup, and a changed client takes effect within the period.
    """
    cache = current_app.extensions.setdefault("identity_cors", {"at": -1e9, "origins": set()})
    # noted before the read (as cached_client's): a set read before a change committed is dropped
    # within the period of the commit; and a set whose read began before another thread's that
    # stored first does not replace it
    stamp = time.monotonic()
    if stamp - cache["at"] > current_app.config["CORS_ORIGINS_CACHE_SECONDS"]:
        origins = set()
        for row in db.session.scalars(select(Client.allowed_cors_origins).where(Client.enabled)):
            origins.update(o.rstrip("/") for o in row or [])
        with _CORS_FILL:
            if stamp > cache["at"]:
                cache.update(at=stamp, origins=origins)
        return origins
    return cache["origins"]


_CORS_FILL = threading.Lock()  # cors_origins: a fill compared with the stored one's time, then stored


def check_scopes(allowed_scopes: list[str], known: set[str]) -> list[str]:
    return [f"unknown scope {s!r}" for s in allowed_scopes if s not in known]


def unknown_scopes_locked(allowed_scopes: list[str]) -> list[str]:
    """check_scopes against the scopes as they are now, the API scopes among them kept from being
    removed until the session's transaction ends (store/scopes.py): checked this way right before
    the client is written, no `scopes remove` commits between the check and the write."""
    return check_scopes(allowed_scopes, lock_api_scopes(allowed_scopes) | set(STANDARD_IDENTITY_RESOURCES))


def _refuse_unknown_scopes(allowed_scopes: list[str]) -> None:
    unknown = unknown_scopes_locked(allowed_scopes)
    if unknown:
        db.session.rollback()
        raise ValidationFailed({"allowed_scopes": unknown})


def apply_client_data(client: Client, data: dict, secret_hashes: list[str]) -> None:
    """Copy validated ClientSchema data onto a Client row."""
    client.client_id = data["client_id"]
    client.client_name = data.get("client_name") or data["client_id"]
    client.secret_hashes = secret_hashes
    for name in (
        "allowed_grant_types", "redirect_uris", "post_logout_redirect_uris", "allowed_cors_origins",
        "allowed_scopes", "require_consent", "require_pkce", "require_verified_email", "allow_offline_access",
        "allow_access_tokens_via_browser", "access_token_lifetime", "backchannel_logout_uri",
        "backchannel_logout_session_required", "frontchannel_logout_uri", "frontchannel_logout_session_required",
        "require_mfa",
    ):
        setattr(client, name, data[name])
    if data.get("enabled") is not None:  # optional in a seed file: absent leaves the switch as it is
        if client.enabled is not None and client.enabled != data["enabled"]:
            client.disabled_at = None if data["enabled"] else now()
        client.enabled = data["enabled"]


SUBJECT_PROBLEM = "is a user's subject identifier (sub); a client's own tokens carry its id as their sub"


def client_id_problem(client_id: str) -> str | None:
    """Why a new client cannot have this id: a user's `sub`. A client_credentials token's `sub`
    is its client's id (RFC 9068 section 2.2), so a resource server would take the client's
    tokens for that user's, and the user's tokens at it for the client's (RFC 9700 section 4.15)."""
    taken = db.session.scalar(select(User.id).where(User.subject == client_id))
    return SUBJECT_PROBLEM if taken is not None else None


def add_client(raw: dict, *, generate_secret: bool) -> tuple[Client, str | None]:
    """Validate and create a client; returns it with a generated secret (shown once) if asked."""
    secret = generate_client_secret() if generate_secret else None
    if secret:
        raw = {**raw, "client_secrets": [secret]}
    try:
        data = ClientSchema().load(raw)
    except ValidationError as err:  # each field named with its client, as the seed file's errors are
        label = f"client {raw.get('client_id')!r} " if isinstance(raw.get("client_id"), str) else ""
        raise ValidationFailed({label + name: messages for name, messages in field_errors(err.messages).items()})
    unknown = check_scopes(data["allowed_scopes"], all_scope_names())
    if unknown:
        raise ValidationFailed({"allowed_scopes": unknown})
    if get_client(data["client_id"]) is not None:
        raise Conflict(f"client {data['client_id']!r} already exists")
    problem = client_id_problem(data["client_id"])
    if problem:
        raise ValidationFailed({f"client {data['client_id']!r} client_id": [problem]})
    hashes = [hash_client_secret(s, generated=bool(secret)) for s in data["client_secrets"]]
    _refuse_unknown_scopes(data["allowed_scopes"])  # again, now locked: after the hashes, which must not hold SQLite's lock
    client = Client(created_at=now())
    apply_client_data(client, data, hashes)
    db.session.add(client)
    try:
        db.session.flush()
    except IntegrityError:
        # the same client added at once by another command (or seed): refused as when added after it
        db.session.rollback()
        if get_client(data["client_id"]) is not None:
            raise Conflict(f"client {data['client_id']!r} already exists") from None
        raise
    audit.record("client_added", client_id=client.client_id)
    db.session.commit()
    return client, secret


def list_clients() -> list[Client]:
    return listing.by_code_point(Client, Client.client_id)


#: a client's lists whose every entry lets it do something: one taken away narrows what it may do
_PERMITTING_LISTS = ("allowed_grant_types", "redirect_uris", "post_logout_redirect_uris", "allowed_scopes")
#: switches that narrow it when turned on, and when turned off
_REQUIREMENTS = ("require_consent", "require_pkce", "require_mfa", "require_verified_email")
_ALLOWANCES = ("allow_offline_access", "allow_access_tokens_via_browser")


def narrows(before: Mapping, after: Mapping) -> bool:
    """Whether a change of a client's settings (ClientSchema names, as stored) takes something away:
    a grant type, redirect URI, post-logout URI or scope; offline access or tokens through the
    browser; a requirement turned on; a shorter access-token lifetime. A worker whose snapshot
    predates it would go on allowing it until the snapshot expires (a token issued then good for
    its whole lifetime, a code sent to a redirect URI taken away), so the command that commits it
    waits the snapshots out before it answers, as `clients disable` does; a change that only adds
    may take its CLIENT_CACHE_SECONDS to be seen."""
    return (any(set(before[name] or []) - set(after[name] or []) for name in _PERMITTING_LISTS)
            or any(after[name] and not before[name] for name in _REQUIREMENTS)
            or any(before[name] and not after[name] for name in _ALLOWANCES)
            or after["access_token_lifetime"] < before["access_token_lifetime"])


def client_settings(client: Client) -> dict:
    """What `narrows` compares, as the client row holds it now."""
    return {name: getattr(client, name) for name in (*_PERMITTING_LISTS, *_REQUIREMENTS, *_ALLOWANCES,
                                                      "access_token_lifetime")}


def wait_out_snapshots() -> bool:
    """Wait until no worker serves a client snapshot read before now (CLIENT_CACHE_SECONDS, the
    period cached_client keeps one); False, at once, when workers keep none."""
    ttl = current_app.config["CLIENT_CACHE_SECONDS"]
    if ttl <= 0:
        return False
    time.sleep(ttl)
    return True


def _delete_issued(client_id: str) -> None:
    """Delete what was issued to a client: codes, refresh tokens, consents, standalone access
    tokens, and the sessions' record of having signed in to it (the caller commits); and give up
    its logout tokens still queued.

    SessionClient too: a client registered again under this id must not be told (nor framed at)
    the sign-outs of sessions that signed in to this one; nor sent the tokens queued for this
    one, which name only the id and a URI the new registration may share.

    Consents first, then codes, then refresh tokens: the order in which a user's revocation of the
    app (consent.revoke_grant) and `scopes remove` (issued_grants.drop_scope) take a user's rows,
    so that on PostgreSQL the two queue instead of each waiting for rows the other holds. The
    first call holds the client's row: the seed, which ends several users' codes and refresh
    tokens user after user, takes the rows of those grants' clients first, and so queues there
    too. The second, after remove_client's wait, holds nothing (the row is gone): against a seed
    ending two users' grants of this client issued meanwhile, PostgreSQL may abort one of them."""
    for model in (Consent, AuthorizationCode, RefreshToken, StandaloneAccessToken, SessionClient):
        db.session.execute(delete(model).where(model.client_id == client_id))
    logout_rows.give_up_client_deliveries(client_id, now(), "the client was removed")


def _locked_client(client_id: str) -> Client:
    """The client, its row locked until the session's transaction ends and read again under the
    lock (store/row_locks.py); NotFound (the transaction rolled back) when there is none."""
    client_rows.lock_client_row(client_id)
    client = db.session.scalar(select(Client).where(Client.client_id == client_id)
                               .execution_options(populate_existing=True))
    if client is None:
        db.session.rollback()
        raise NotFound(f"no client {client_id!r}")
    return client


def remove_client(client_id: str) -> None:
    """Remove a client and everything issued to it; returns once no worker serves it any more.

    A worker whose snapshot predates the commit still serves the client for CLIENT_CACHE_SECONDS
    (codes, refresh tokens, consents), so this waits that long, as set_client_enabled does, and
    then deletes what was issued meanwhile, unless the id was registered again since."""
    client = _locked_client(client_id)  # the same command run twice at once: the second waits, then finds none
    _delete_issued(client_id)
    db.session.delete(client)
    audit.record("client_removed", client_id=client_id)
    db.session.commit()
    if not wait_out_snapshots():
        return
    if get_client(client_id) is None:
        _delete_issued(client_id)
    db.session.commit()  # (registered again during the wait: what was issued since is the new client's)


# --- the operator's changes to a registered client -------------------------------------------------

_SCHEMA_FIELDS = ("client_name", "allowed_grant_types", "redirect_uris", "post_logout_redirect_uris",
                  "allowed_cors_origins", "allowed_scopes", "require_consent", "require_pkce", "allow_offline_access",
                  "allow_access_tokens_via_browser", "access_token_lifetime", "require_mfa", "require_verified_email",
                  "backchannel_logout_uri", "backchannel_logout_session_required", "frontchannel_logout_uri",
                  "frontchannel_logout_session_required")


#: the ClientSchema fields stored on the row as they are loaded (the secrets are hashed, the
#: switch has its own commands)
_STORED_FIELDS = tuple(name for name in ClientSchema().fields if name not in ("client_id", "client_secrets", "enabled"))


def update_client(client_id: str, changes: dict) -> tuple[Client, list[str]]:
    """Change the given fields of a client (ClientSchema names), validated as `add` and the seed
    validate the whole client; returns it with the names of the fields that changed. Its secrets
    are kept. Workers see the change within CLIENT_CACHE_SECONDS (their client snapshots); one
    that takes something away returns only then (`narrows`)."""
    # judged and written under the row's lock: a removal committed after a read without it left
    # no row to write (a traceback), and another update's change would be judged by a stale copy
    client = _locked_client(client_id)
    unknown = set(changes) - set(_SCHEMA_FIELDS)
    if unknown:
        db.session.rollback()
        raise ValidationFailed({name: ["cannot be changed with update"] for name in sorted(unknown)})
    # every stored field, not only those update may change: the schema would default the others
    # (require_mfa, the logout URIs, ...) and apply_client_data would write the defaults
    raw = {name: getattr(client, name) for name in _STORED_FIELDS}
    raw.update(changes, client_id=client.client_id)
    if client.secret_hashes:  # validated as the confidential client it is (the secret itself is not changed)
        raw["client_secrets"] = ["kept"]
    try:
        data = ClientSchema().load(raw)
    except ValidationError as err:
        db.session.rollback()  # the row's lock ends here
        raise ValidationFailed({f"client {client_id!r} {name}": messages
                                for name, messages in field_errors(err.messages).items()})
    data["client_name"] = data.get("client_name") or client.client_id
    _refuse_unknown_scopes(data["allowed_scopes"])
    changed = [name for name in _SCHEMA_FIELDS if getattr(client, name) != data[name]]
    if changed:
        narrowed = narrows(client_settings(client), data)
        apply_client_data(client, data, client.secret_hashes)
        audit.record("client_updated", client_id=client.client_id, detail={"fields": changed})
        db.session.commit()
        if narrowed:
            wait_out_snapshots()
    else:
        db.session.rollback()  # nothing to write: the row's and the scopes' locks end here
    return client, changed


def set_client_enabled(client_id: str, enabled: bool) -> bool:
    """Disable or enable a client; True if that changed it. A disabled client's authorization and
    token requests are refused, and so are the access tokens it holds (verify_access_token); this
    returns once every worker's snapshot of it is newer than the change (CLIENT_CACHE_SECONDS)."""
    client = _locked_client(client_id)  # the same switch run twice at once: the second waits, then finds it made
    if client.enabled == enabled:
        db.session.rollback()
        return False
    client.enabled = enabled
    client.disabled_at = None if enabled else now()
    audit.record("client_enabled" if enabled else "client_disabled", client_id=client_id)
    db.session.commit()
    wait_out_snapshots()
    return True

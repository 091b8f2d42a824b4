"""Seeding: one JSON file, validated whole, applied in one transaction, idempotent."""

import json
import re
from dataclasses import dataclass, field

from marshmallow import ValidationError
from sqlalchemy import select

from ..clock import now
from ..constants import LOCAL_API_SCOPE, STANDARD_IDENTITY_RESOURCES
from ..errors import ValidationFailed
from ..extensions import db
from ..models import ApiScope, Client, User
from ..store import accounts as user_rows
from ..store import clients as client_rows
from ..store.issued_grants import clients_and_scopes_of_user_grants
from ..store.scopes import lock_api_scope_row
from .input_schemas import SeedSchema, flatten_messages as _flatten
from . import audit, bearer_cache, notifications
from .accounts import (build_user, find_user, new_password_hash, normalize_login, revoke_grants_and_sessions,
                       store_new_password)
from .client_secrets import hash_client_secret, verify_client_secret
from .clients import (apply_client_data, check_scopes, client_id_problem, get_client, narrows, unknown_scopes_locked,
                      wait_out_snapshots)
from .issued_grants import end_client_grants
from .password_policy import normalize, password_problems
from .passwords import verify_password
from .resources import all_scope_names, ensure_standard_resources
from .user_status import apply_enabled


@dataclass
class SeedReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    password_changed: list[int] = field(default_factory=list)  # user ids: wait out their cached bearer answers
    # user ids whose address, its verification or name changed: the local API and UserInfo read
    # them from the bearer check's row, which workers remember (bearer_cache.py), so waited out too
    account_changed: list[int] = field(default_factory=list)
    passwords_reset: list = field(default_factory=list)  # notifications.Addressee: told once the seed commits
    addresses_changed: list = field(default_factory=list)  # notifications.AddressChange: told likewise
    client_disabled: bool = False  # wait out the workers' client snapshots (clients.set_client_enabled)
    client_enabled: bool = False  # likewise, as `clients enable` does: no worker still refuses it then
    made_public: list[str] = field(default_factory=list)  # client ids: revoked again once the snapshots are out
    secret_removed: bool = False  # a secret taken away (a leaked one replaced): wait out the snapshots that take it
    # a secret given to a client that exists (one added to rotate, or a public client made
    # confidential): wait out the snapshots that refuse it, or serve the client without one
    secret_added: bool = False
    narrowed: bool = False  # a client allowed less (clients.narrows): wait out the snapshots that allow it

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _label(section: str, index, items: list[dict], key: str) -> str:
    try:
        name = items[int(index)].get(key)
    except (ValueError, IndexError, AttributeError, TypeError):
        name = None
    singular = {"clients": "client", "users": "user", "api_scopes": "api scope"}[section]
    return f"{singular} {name!r}" if name else f"{section}[{index}]"


def describe_errors(messages: dict, raw: dict) -> dict[str, list[str]]:
    """Turn marshmallow's nested errors into 'client 'mobile' field: message' lines."""
    out: dict[str, list[str]] = {}
    keys = {"clients": "client_id", "users": "username", "api_scopes": "name"}
    for section, per_item in messages.items():
        if section in keys and isinstance(per_item, dict):
            items = raw.get(section) if isinstance(raw.get(section), list) else []
            for index, fields_ in per_item.items():
                label = _label(section, index, items, keys[section])
                for field_name, message in _flatten(fields_):
                    out.setdefault(label, []).append(f"{field_name}: {message}")
        else:
            for field_name, message in _flatten(per_item, section):
                out.setdefault("file", []).append(f"{field_name}: {message}")
    return out


def _check_cross_rules(data: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    # the local API scope: apply_seed adds it when the database does not have it yet
    known = all_scope_names() | {LOCAL_API_SCOPE} | {s["name"] for s in data["api_scopes"]}
    for scope in data["api_scopes"]:
        if scope["name"] in STANDARD_IDENTITY_RESOURCES:
            errors.setdefault(f"api scope {scope['name']!r}", []).append("name: is an identity scope, which always exists")
    for section, key in (("clients", "client_id"), ("users", "username"), ("api_scopes", "name")):
        seen = set()
        for item in data[section]:
            ident = normalize_login(item[key]) if section == "users" else item[key]
            if ident in seen:
                errors.setdefault(f"{section[:-1].replace('_', ' ')} {item[key]!r}", []).append(f"{key}: listed twice")
            seen.add(ident)
    for client in data["clients"]:
        unknown = check_scopes(client["allowed_scopes"], known)
        if unknown:
            errors.setdefault(f"client {client['client_id']!r}", []).append("allowed_scopes: " + "; ".join(unknown))
        problem = client_id_problem(client["client_id"])
        if problem:
            errors.setdefault(f"client {client['client_id']!r}", []).append("client_id: " + problem)
    emails = set()
    for user in data["users"]:
        problems = password_problems(user["password"], username=user["username"], email=user["email"],
                                     name=user["name"])
        if problems:
            errors.setdefault(f"user {user['username']!r}", []).append("password: " + " ".join(problems))
        if user["email"]:
            if normalize_login(user["email"]) in emails:
                errors.setdefault(f"user {user['username']!r}", []).append("email: listed twice")
            emails.add(normalize_login(user["email"]))
            other = find_user(user["email"])
            if other is not None and other.username_normalized != normalize_login(user["username"]):
                errors.setdefault(f"user {user['username']!r}", []).append("email: belongs to another user")
    return errors


def _string_problem(value: str) -> str | None:
    """Why a string cannot be stored or hashed: a NUL (PostgreSQL refuses it in text), or a lone
    surrogate that JSON can spell (\\ud800) and UTF-8 cannot encode."""
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (a lone surrogate such as \\ud800)"
    return None


def _nul_messages(value):
    """Marshmallow-shaped messages for every string in a parsed file that cannot be stored
    (_string_problem; the write would fail after validation); None if there is none."""
    if isinstance(value, str):
        problem = _string_problem(value)
        return [problem] if problem else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    found = {}
    for key, item in items:
        if isinstance(key, str) and _string_problem(key):  # a field name: shown escaped
            found[ascii(key)] = ["field name " + _string_problem(key)]
        elif messages := _nul_messages(item):
            found[key] = messages
    return found or None


#: a seed nests 4 levels (file, list, item, list); json.loads recursing to Python's limit instead
#: raised RecursionError in the middle of its C scanner, where a garbage collection that came due
#: ran finalizers that failed too ("Exception ignored in sys.unraisablehook" on standard error,
#: around the one-line refusal)
SEED_NESTING_MAX = 64
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nested_deeper_than(text: str, limit: int) -> bool:
    """Whether `text`'s brackets (outside strings) open more than `limit` deep."""
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def load_seed(text: str | bytes) -> dict:
    """Parse and validate a seed file (text, or its bytes: UTF-8, a byte order mark allowed),
    raising ValidationFailed with per-item messages."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as err:  # (the message names the byte, never the file's text)
            raise ValidationFailed({"file": [f"not UTF-8 text: byte {err.object[err.start]:#04x} at offset {err.start}"]})
    if _nested_deeper_than(text, SEED_NESTING_MAX):
        raise ValidationFailed({"file": ["not valid JSON: nested too deeply"]})
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValidationFailed({"file": [f"not valid JSON: {err}"]})
    except RecursionError:  # (deeper than the check above lets through: not reached)
        raise ValidationFailed({"file": ["not valid JSON: nested too deeply"]})
    except ValueError:  # a number past Python's 4300 digits (JSONDecodeError is caught above)
        raise ValidationFailed({"file": ["not valid JSON: a number too long to read"]})
    if not isinstance(raw, dict):
        raise ValidationFailed({"file": ["the top level must be a JSON object"]})
    nul = _nul_messages(raw)
    if nul:
        raise ValidationFailed(describe_errors(nul, raw))
    try:
        data = SeedSchema().load(raw)
    except ValidationError as err:
        raise ValidationFailed(describe_errors(err.messages, raw))
    errors = _check_cross_rules(data)
    if errors:
        raise ValidationFailed(errors)
    return data


def _seed_scope(item: dict, report: SeedReport) -> None:
    # read under the row's lock (_lock_in_one_order), held to the commit: a `scopes remove`
    # committed after a read without it left no row to write (a traceback); none left, the scope
    # is added anew
    scope = db.session.scalar(select(ApiScope).where(ApiScope.name == item["name"])
                              .execution_options(populate_existing=True))
    label = f"api scope {item['name']}"
    if scope is None:
        db.session.add(ApiScope(**item))
        report.created.append(label)
    elif (scope.display_name, scope.description) != (item["display_name"], item["description"]):
        scope.display_name, scope.description = item["display_name"], item["description"]
        report.updated.append(label)
    else:
        report.unchanged.append(label)


def _client_secret_hashes(client: Client | None, secrets: list[str]) -> list[str]:
    """Keep the stored hash of every secret that is unchanged, hash the new ones."""
    kept = []
    for secret in secrets:
        existing = next((h for h in (client.secret_hashes if client else []) if verify_client_secret([h], secret)), None)
        kept.append(existing or hash_client_secret(secret))
    return kept


def _hashes_first(data: dict, reset_passwords: bool) -> tuple[list[list[str]], list[str | None]]:
    """Every Argon2id hash the seed needs (each client's secrets; each new user's password, and
    with `reset_passwords` each existing one's that differs, else None), computed before the
    seed's first write: on SQLite that write takes the database's one write lock, and every
    serving worker's write waited out the hashes behind it (about 25 ms each; 40 users, a second)."""
    secrets = [_client_secret_hashes(get_client(item["client_id"]), item["client_secrets"]) for item in data["clients"]]
    passwords = []
    for item in data["users"]:
        user = find_user(item["username"])
        if user is None or (reset_passwords and not verify_password(user.password_hash, normalize(item["password"]))):
            passwords.append(new_password_hash(item["password"]))
        else:
            passwords.append(None)
    return secrets, passwords


def _seed_client(item: dict, report: SeedReport, hashes: list[str]) -> None:
    # read under the row's lock (_lock_in_one_order), held to the commit, as every other client
    # writer reads it (clients._locked_client): a `clients remove` committed after a read without
    # it left no row to write (a traceback); none left, the client is registered anew
    client = db.session.scalar(select(Client).where(Client.client_id == item["client_id"])
                               .execution_options(populate_existing=True))
    label = f"client {item['client_id']}"
    if client is None:
        client = Client(created_at=now())
        apply_client_data(client, item, hashes)
        db.session.add(client)
        report.created.append(label)
        return
    before = {c.key: getattr(client, c.key) for c in Client.__table__.columns}
    apply_client_data(client, item, hashes)
    after = {c.key: getattr(client, c.key) for c in Client.__table__.columns}
    if before["enabled"] and not after["enabled"]:
        report.client_disabled = True
    if after["enabled"] and not before["enabled"]:
        report.client_enabled = True
    if set(before["secret_hashes"] or []) - set(hashes):
        report.secret_removed = True
    if set(hashes) - set(before["secret_hashes"] or []):
        report.secret_added = True
    if narrows(before, after):
        report.narrowed = True
    if before["secret_hashes"] and not hashes:
        end_client_grants(client.client_id, reason="client_made_public")
        report.made_public.append(client.client_id)
    (report.updated if before != after else report.unchanged).append(label)


def _seed_user(item: dict, user: User | None, report: SeedReport, reset_passwords: bool,
               password_hash: str | None) -> None:
    """Create a user with the file's password; for an existing one, update the other fields.

    An existing user's password is theirs (they may have changed it since the last seed): it is
    replaced only with `reset_passwords`, and then audited for that user. So is a verification:
    `email_verified: false` (the default) leaves a verified address verified; a new address is
    verified only if the file says so. `user`: the existing one, read under its row's lock
    (_lock_in_one_order), or None.
    """
    label = f"user {item['username']}"
    if user is None:  # one removed since _hashes_first, on the seed's last try: build_user hashes (rare)
        user = build_user(item["username"], item["email"], item["name"], item["password"],
                          email_verified=item["email_verified"], password_hash=password_hash)
        if item.get("enabled") is False:
            user.enabled, user.disabled_at = False, now()
        db.session.add(user)
        report.created.append(label)
        return
    changed = False
    reset = reset_passwords and password_hash is not None  # (_hashes_first: the file's password is not the user's)
    if reset:
        store_new_password(user, password_hash)
        user.failed_attempts, user.locked_until = 0, 0
        revoke_grants_and_sessions(user, None)
        audit.record("password_reset_by_seed", user_id=user.id, detail={"username": user.username})
        label += " (password reset)"
        report.password_changed.append(user.id)
        changed = True
    if item.get("enabled") is not None and apply_enabled(user, item["enabled"]):
        if not item["enabled"]:
            label += " (disabled)"
            report.password_changed.append(user.id)  # its tokens: waited out as after a password change
        changed = True
    if _apply_profile(user, item, report):  # last: see _apply_profile
        report.account_changed.append(user.id)
        changed = True
    if reset:  # told at the address the file gives her
        report.passwords_reset.append(notifications.addressee(user))
    (report.updated if changed else report.unchanged).append(label)


def _apply_profile(user: User, item: dict, report: SeedReport) -> bool:
    """Write the file's address, its verification and name to an existing user, flushed now;
    whether any changed (what the local API and UserInfo read back).

    Her part's last write: an UPDATE of the address (a unique key) raises the seed's lock on her
    row (FOR NO KEY UPDATE, _locked_again) to FOR UPDATE, which waits for every transaction
    holding her row's KEY SHARE (an insert of a row that refers to her) and then holds off new
    ones. Raised before her codes and sessions are ended, a redemption of her code, holding the
    code and her session while it waited for that KEY SHARE, and the seed, waiting for them, were
    a deadlock. Raised after, it waits only for transactions that wait for nothing the seed holds
    once they have the KEY SHARE: a redemption or rotation takes it last and commits; a new code,
    or the password grant's refresh token, is an insert and its commit; an app's consent then
    locks only its consent row, which no seed writes; sign-ins, links and second factors take her
    row first, so they queue behind the seed holding no KEY SHARE."""
    changed = False
    if (user.email, user.name) != (item["email"], item["name"]):
        if user.email != item["email"]:
            report.addresses_changed.append(notifications.AddressChange(
                user.id, user.email, item["email"], item["name"] or user.username, user.username))
            user.email_verified = False
            user.pending_email = None
        user.email = item["email"]
        user.email_normalized = normalize_login(item["email"]) if item["email"] else None
        user.name = item["name"]
        changed = True
    if item["email_verified"] and not user.email_verified:
        user.email_verified = True
        changed = True
    db.session.flush()
    return changed


def _lock_in_one_order(data: dict, ended: tuple[set[str], set[str]] = (frozenset(), frozenset())
                       ) -> dict[str, User | None]:
    """Take the rows of every API scope, client and existing user the file lists before writing
    any, each kind in the order of its name, held to the commit; the users, read under their
    locks, by user name (None: no such user). Scopes and clients are read under theirs when written. In the file's order, two seeds listing the same rows in another
    order each held a row the other waited for (PostgreSQL aborted one); and a client made public
    ended its users' codes and refresh tokens before the seed took those users' rows, the order
    `users remove`, a password change and an app's revocation take the other way round.

    `ended` (_ended_grants): the clients of the codes and refresh tokens the seed ends for the
    users it resets or disables, and the scopes those carry, are taken with the listed ones: it
    ends them user after user, while `clients remove` (which takes its client's row first)
    deletes a client's codes and refresh tokens for all users in the order it finds them, and
    `scopes remove` (which deletes its scope's row first) takes the scope out of them likewise;
    holding one user's code while waiting for another's, the removal and the seed were a
    deadlock (PostgreSQL aborted one). Under the client's or scope's row the removal waits for
    the seed, or the seed for the removal. (A name that is an identity scope, not an API
    scope's, locks nothing.)"""
    grant_clients, grant_scopes = ended
    for name in sorted({item["name"] for item in data["api_scopes"]} | grant_scopes):
        lock_api_scope_row(name)
    for client_id in sorted({item["client_id"] for item in data["clients"]} | grant_clients):
        client_rows.lock_client_row(client_id)
    return {item["username"]: _locked_again(find_user(item["username"]))
            for item in sorted(data["users"], key=lambda listed: listed["username"])}


def _ended_grants(data: dict, reset_passwords: bool,
                  password_hashes: list[str | None]) -> tuple[set[str], set[str]]:
    """The clients of the live codes and refresh tokens of the existing users the seed resets
    (a new password hash with `reset_passwords`) or disables, and the scopes those carry, read
    before their rows are locked (_lock_in_one_order takes these clients' and API scopes' rows
    before the users'). A grant of another client, or carrying another scope, issued after this
    read is ended too, though its client's or scope's row is not held. Read again once the users
    are locked, it would not close that gap: a new code's insert, and a redemption's refresh
    token, take only KEY SHARE on the user's row, which the seed's lock lets by (RowLock says why
    it is no stronger); only the password grant's insert (FOR SHARE) waits for it."""
    ending = [find_user(item["username"]) for item, password_hash in zip(data["users"], password_hashes)
              if (reset_passwords and password_hash is not None) or item.get("enabled") is False]
    return clients_and_scopes_of_user_grants([user.id for user in ending if user is not None])


def _locked_again(found: User | None) -> User | None:
    """The user found (read without a lock), read again under the row's lock, held to the commit;
    None if none is left. Written to as read, the user a `users remove` committed since had no row
    left to write (SQLAlchemy's StaleDataError, a traceback). FOR NO KEY UPDATE also for a user
    whose address the file changes: the address's UPDATE raises it, once her codes and sessions
    are ended (_apply_profile)."""
    if found is None:
        return None
    user_rows.lock_user_row(found.id)
    return db.session.get(User, found.id, populate_existing=True)


def _refuse_scopes_removed_meanwhile(clients: list[dict]) -> None:
    """The file's clients' scopes were checked when it was read; check them again, locked against
    removal until the seed commits (clients.unknown_scopes_locked): a `scopes remove` may have
    committed since."""
    errors = {}
    for item in clients:
        unknown = unknown_scopes_locked(item["allowed_scopes"])
        if unknown:
            errors[f"client {item['client_id']!r}"] = ["allowed_scopes: " + "; ".join(unknown)]
    if errors:
        raise ValidationFailed(errors)


class _RemovedSinceHashing(Exception):
    """A listed user who existed when the hashes were made (none made for her) was removed before
    the seed took her row: created anew, her password would be hashed with the seed's locks held
    (on SQLite the database's one write lock, which every serving worker's write waits for)."""


#: the seed's tries from its hashing step; the last one hashes such a user's password in place
SEED_TRIES = 3


def apply_seed(data: dict, *, reset_passwords: bool = False) -> SeedReport:
    """Create or update everything in a validated seed, all in one transaction.

    The file's API scopes come before the standard resources, so a fresh database's local API
    scope counts as created by the seed (it is written now) rather than as already there.
    """
    for _ in range(SEED_TRIES - 1):
        try:
            return _apply_seed_once(data, reset_passwords, hash_in_place=False)
        except _RemovedSinceHashing:  # rolled back: redone from the hashes, which now include hers
            pass
    return _apply_seed_once(data, reset_passwords, hash_in_place=True)


def _apply_seed_once(data: dict, reset_passwords: bool, *, hash_in_place: bool) -> SeedReport:
    report = SeedReport()
    try:
        secret_hashes, password_hashes = _hashes_first(data, reset_passwords)
        locked_users = _lock_in_one_order(data, _ended_grants(data, reset_passwords, password_hashes))
        if not hash_in_place and any(locked_users[item["username"]] is None and password_hash is None
                                     for item, password_hash in zip(data["users"], password_hashes)):
            raise _RemovedSinceHashing()
        for item in data["api_scopes"]:
            _seed_scope(item, report)
        db.session.flush()
        ensure_standard_resources()
        _refuse_scopes_removed_meanwhile(data["clients"])
        for item, hashes in zip(data["clients"], secret_hashes):
            _seed_client(item, report, hashes)
        for item, password_hash in zip(data["users"], password_hashes):
            _seed_user(item, locked_users[item["username"]], report, reset_passwords, password_hash)
        if report.changed:
            audit.record("seeded", detail={"created": report.created, "updated": report.updated})
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    # as every password change, and an address changed or verified through a link, does (bearer_cache.py)
    bearer_cache.wait_for_leases(report.password_changed + report.account_changed)
    for user in report.passwords_reset:  # as `users set-password` tells them
        notifications.password_changed(user, how=notifications.SET_BY_OPERATOR)
    for change in report.addresses_changed:  # as an address changed through its link tells both
        notifications.address_changed_by_operator(change)
    if (report.client_disabled or report.client_enabled or report.made_public or report.secret_removed
            or report.secret_added or report.narrowed):
        # as clients.set_client_enabled does: no worker takes a removed secret then, nor refuses
        # an added one or an enabled client, nor serves a client given its first secret as public,
        # nor allows what was taken from a client
        wait_out_snapshots()
    _end_grants_issued_meanwhile(report.made_public)
    return report


def _end_grants_issued_meanwhile(client_ids: list[str]) -> None:
    """Revoke again the codes and refresh tokens of clients the seed made public: a worker whose
    snapshot predated the seed still took the old secret, and issued them, until the wait above.

    Client after client, their rows not locked: a `clients remove` writes its own client's rows
    only, so the two wait for each other only at that client's codes, which both take before its
    refresh tokens (issued_grants.revoke_client_rows, clients._delete_issued): one queues."""
    for client_id in client_ids:
        client = get_client(client_id)
        if client is not None and not client.secret_hashes:  # not given a secret again meanwhile
            end_client_grants(client_id, reason="client_made_public", audit_none=False)
    if client_ids:
        db.session.commit()

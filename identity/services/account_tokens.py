"""One-time account tokens: the links mailed for a password reset or an address verification.

A token is 256 random bits (43 url-safe characters) and is stored only as its SHA-256: the
token is random, so a slow password hash would add nothing, and the table alone opens nothing.
Each is for one `purpose`, for one user, until `expires_at`, and works once; a newer token of
the same purpose supersedes the older ones. The caller owns the transaction (these functions
do not commit), so a token is consumed together with the change it allows.
"""

import hashlib
import secrets
from dataclasses import dataclass

from ..clock import now
from ..store import account_tokens as store
from ..store.writes import Write

PASSWORD_RESET = "password_reset"
VERIFY_EMAIL = "verify_email"
# a passkey ceremony's challenge, spent by the answer that signed in with it (services/passkeys.py):
# the ceremony's state travels in the signed session cookie, which a replay can send again
PASSKEY_CHALLENGE = "passkey_challenge"
# a half-finished sign-in (a right password, no second step yet), spent by the second step that
# finishes it (services/accounts.py, passkeys.py): its state too travels in the signed cookie
PENDING_SIGN_IN = "pending_sign_in"
# a code given for a change on the factor pages, by the browser session that gave it (services/mfa.py):
# the same form sent again (a double click, a post resent) finds its code spent by the first
CODE_GIVEN = "code_given"
# a notice mailed to an address nobody has verified (services/notifications.py), "notice:" and
# the notice's template: counted toward that account's hourly share of that kind of notice, so an
# account registered with someone else's address cannot have it mailed a notice per change
UNVERIFIED_NOTICE = "notice:"

TOKEN_BYTES = 32  # 256 bits


def new_token() -> tuple[str, str]:
    """A fresh token and its hash."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue(user_id: int, purpose: str, lifetime_seconds: int, *, email: str | None = None) -> str:
    """Make a token for `user_id` and `purpose` that supersedes the user's earlier ones; return it
    (the only time it exists in the clear). The caller commits."""
    token, token_hash = new_token()
    stamp = now()
    store.supersede_tokens(user_id, purpose, stamp)
    store.insert_token(token_hash=token_hash, purpose=purpose, user_id=user_id, email=email,
                       created_at=stamp, expires_at=stamp + lifetime_seconds)
    return token


@dataclass
class Checked:
    """What a presented token is: `row` is set when it can be used now, else `reason` says why not."""

    row: store.TokenRow | None
    reason: str | None = None  # "unknown" (never issued, or altered), "expired", "used" (or superseded)


def spend_once(user_id: int, purpose: str, value: str, expires_at: int) -> bool:
    """Record a one-time value that did not come from `issue` (a passkey challenge) as used by
    `user_id`, kept until `expires_at`: True the first time, False if it was spent already.
    The caller commits."""
    return store.insert_spent(token_hash=hash_token(value), purpose=purpose, user_id=user_id, stamp=now(),
                              expires_at=expires_at)


def spend_write(user_id: int, purpose: str, value: str, expires_at: int) -> Write:
    """The write that records `value` as used, as spend_once does, for a transaction of
    store.writes.write: a plain INSERT, so one spent already fails the whole transaction with an
    IntegrityError (on PostgreSQL after the transaction that spent it commits)."""
    return store.spent_write(token_hash=hash_token(value), purpose=purpose, user_id=user_id, stamp=now(),
                             expires_at=expires_at)


def spent(purpose: str, value: str) -> bool:
    """Whether `value` was recorded as used for `purpose` (spend_once, spend_write)."""
    return store.find_token(hash_token(value), purpose) is not None


def spent_until_later(purpose: str, value: str) -> bool:
    """Whether `value` was recorded as used for `purpose` and its record has not expired yet."""
    row = store.find_token(hash_token(value), purpose)
    return row is not None and row.expires_at > now()


def check(token: str | None, purpose: str) -> Checked:
    """Whether `token` is a usable token of `purpose` now (without using it)."""
    if not token or len(token) > 200:
        hash_token("")  # the same work as for a well-formed token
        return Checked(None, "unknown")
    row = store.find_token(hash_token(token), purpose)
    if row is None:
        return Checked(None, "unknown")
    if row.used_at is not None:
        return Checked(None, "used")
    if row.expires_at <= now():
        return Checked(None, "expired")
    return Checked(row)


def find(token: str | None, purpose: str) -> store.TokenRow | None:
    """The token's row, used or not, expired or not (None for one never issued)."""
    if not token or len(token) > 200:
        return None
    return store.find_token(hash_token(token), purpose)


def disabled_owner(token: str | None, purpose: str) -> int | None:
    """The user id of an ended token of `purpose` whose account is disabled, or None: `users
    disable` ends the account's links, and one opened while it is disabled is refused (and
    audited) as "disabled", for that account, not as "used"."""
    if not token or len(token) > 200:  # as find
        return None
    return store.ended_token_disabled_owner(hash_token(token), purpose)


def consume(row: store.TokenRow) -> bool:
    """Use a checked token: True for the one request that did (the caller commits with its change)."""
    return store.consume_token(row.id, now())


def supersede(user_id: int, purpose: str) -> int:
    """End the user's unused tokens of `purpose` (a password change ends pending reset links)."""
    return store.supersede_tokens(user_id, purpose, now())


def issued_since(user_id: int, purpose: str, since: int) -> int:
    """How many tokens of `purpose` the user was sent since `since` (epoch seconds)."""
    return store.count_tokens_since(user_id, purpose, since)


def seconds_until_fewer_than(user_id: int, purpose: str, limit: int, window: int) -> int:
    """How long until fewer than `limit` tokens of `purpose` were sent in the last `window`
    seconds (issued_since(now - window) < limit): the limit-th newest leaves it; at least 1."""
    stamp = now()
    made = store.created_since(user_id, purpose, stamp - window)
    return max(made[limit - 1] + window + 1 - stamp, 1) if len(made) >= limit else 1


def newest(user_id: int, purpose: str) -> tuple[str | None, int] | None:
    """The address and creation time (epoch seconds) of the user's newest token of `purpose`."""
    return store.newest_token(user_id, purpose)

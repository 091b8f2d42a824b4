"""Authorization codes and refresh tokens as rows: read a grant, consume it once, rotate, revoke.

Consuming a code or a refresh token is one conditional UPDATE (`... WHERE consumed_at IS NULL`),
so of two simultaneous redemptions exactly one wins; what the loser means (a replay) is the
service's business (services/issued_grants.py), not this module's.

The sign-in's hot path is built once, at import: the authorization endpoint writes a code, the
token endpoint reads it with its user on the autocommit connection (no pool checkout, no ORM)
and then consumes it with the tokens it produced. On SQLite the writes are one BEGIN IMMEDIATE
transaction on that connection; on PostgreSQL a code's writes go on the durable autocommit
connection, which commits synchronously (the first one may not: config.py allows that for
rotations only), and a rotation is one statement on the autocommit connection.

Functions that say "in the session's transaction" leave the commit to their caller (a service).
"""

import json
from collections import namedtuple
from enum import Enum

from sqlalchemy import (CompoundSelect, Select, String, and_, bindparam, cast, delete, exists, insert, or_, select, text,
                        union, update)

from ..extensions import db
from ..models import (AuthorizationCode, Consent, RefreshToken, RevokedAccessToken, StandaloneAccessToken, User,
                      UserSession)
from .accounts import STILL_SIGNED_IN_LOCKED, still_user
from .connection import autocommit_connection
from .writes import Write, durable_alone, insert_if, write, write_if

# --- codes ---------------------------------------------------------------------------------
_CODE_FIELDS = ("code_hash", "client_id", "user_id", "session_id", "redirect_uri", "response_type", "scope", "nonce",
                "code_challenge", "code_challenge_method", "auth_time", "created_at", "expires_at", "family_id",
                "front_channel_jti", "amr", "access_expires_at", "password_version")
_INSERT_CODE = insert(AuthorizationCode).values({name: bindparam(name) for name in _CODE_FIELDS})
_CODE_GRANT = (
    select(AuthorizationCode.id, AuthorizationCode.client_id, AuthorizationCode.user_id, AuthorizationCode.session_id,
           AuthorizationCode.redirect_uri, AuthorizationCode.scope, AuthorizationCode.nonce,
           AuthorizationCode.code_challenge, AuthorizationCode.code_challenge_method, AuthorizationCode.auth_time,
           AuthorizationCode.created_at, AuthorizationCode.expires_at, AuthorizationCode.consumed_at,
           AuthorizationCode.family_id,
           AuthorizationCode.issued_jti, AuthorizationCode.amr,
           AuthorizationCode.password_version.label("minted_password_version"), User.subject, User.password_version,
           User.email, User.email_verified,  # the ID token's email claims (services/id_tokens.py)
           # the browser session the code was minted in, if not revoked (None, None otherwise): whether
           # it is still live is the session service's rule, read in the same statement
           UserSession.created_at.label("session_created_at"), UserSession.last_seen_at.label("session_last_seen_at"))
    .join(User, User.id == AuthorizationCode.user_id)
    .outerjoin(UserSession, and_(UserSession.public_sid == AuthorizationCode.session_id, UserSession.revoked_at.is_(None)))
    .where(AuthorizationCode.code_hash == bindparam("code_hash"))
)
CodeGrant = namedtuple("CodeGrant", [column.key for column in _CODE_GRANT.selected_columns])
_CODES = AuthorizationCode.__table__
_SESSIONS = UserSession.__table__
# Unexpired as well as unused: a password change ends a user's codes by expiring them, and a
# redemption that raced it loses here (or commits first, and the change revokes what it issued).
# Its session not signed out either (one lookup by the session's unique public id): a sign-out
# committed since the code was read ends it too.
_SESSION_NOT_ENDED = or_(_CODES.c.session_id.is_(None),
                         exists().where(_SESSIONS.c.public_sid == _CODES.c.session_id, _SESSIONS.c.revoked_at.is_(None)))
# The same, as the consuming statement asks it (PostgreSQL; SQLite renders no lock, its one write
# lock serialises the writers): the session's row locked FOR SHARE until the redemption commits.
# A session's end (an UPDATE of that row) that comes after this check waits for the redemption and
# commits after its tokens: the statement may wait after the check (at the user's row, for its
# refresh token's foreign key), and a grant committed after its session's end is one that "Sign
# out everywhere else" never sees. An end that came first is seen even if it committed after the
# statement began (READ COMMITTED reads again a row it waited to lock).
# Lock order: the code's row first (_CODE_LOCKED), then its session's, then the user's (KEY SHARE,
# the refresh token's key), as a password change (the user's row, codes, then sessions) and `users
# remove` (the user's row, codes, then the cascade to sessions) take them. With the session first,
# a redemption holding it while it waited for the code that a password change held while that
# waited for the session was a deadlock (tests/test_redemption_review.py). A session whose public
# id is handed over (continue_session) at that very moment is no longer found (the row it locked
# has another id by then, and the one that took the id has not it in the snapshot): the service
# then consumes again (code_state).
_SESSION_LIVE_LOCKED = or_(_CODES.c.session_id.is_(None),
                           select(_SESSIONS.c.id).where(_SESSIONS.c.public_sid == _CODES.c.session_id,
                                                        _SESSIONS.c.revoked_at.is_(None))
                           .with_for_update(read=True).exists())
_LOCKED_CODE = _CODES.alias("locked_code")
_CODE_LOCKED = _CODES.c.id == (select(_LOCKED_CODE.c.id).where(_LOCKED_CODE.c.id == bindparam("code_id"))
                               .with_for_update(key_share=True).scalar_subquery())
_CONSUME_CODE = (
    update(_CODES)
    .where(_CODE_LOCKED, _CODES.c.consumed_at.is_(None), _CODES.c.expires_at >= bindparam("stamp"),
           _SESSION_LIVE_LOCKED)
    .values(consumed_at=bindparam("stamp"), issued_jti=bindparam("jti"),
            access_expires_at=bindparam("access_expires_at"))
)
_BURN_CODE = (
    update(_CODES)
    .where(_CODES.c.id == bindparam("code_id"), _CODES.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("stamp"))
)


def _then_successor(consume: str):
    """PostgreSQL: `consume` (an UPDATE ... RETURNING family_id of a code or a refresh token) and
    the successor refresh token (successor_values' parameters) in one statement, one round trip,
    one transaction: the token is stored only if this statement consumed the old grant."""
    return text(f"""
    WITH consumed AS ({consume})
    INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, session_id, scope, auth_time,
                                access_token_jti, issued_at, expires_at, user_agent, ip_address, amr, password_version)
    SELECT CAST(:new_hash AS VARCHAR), family_id, CAST(:client_id AS VARCHAR), CAST(:user_id AS INTEGER),
           CAST(:session_id AS VARCHAR), CAST(:scope AS TEXT), CAST(:auth_time AS BIGINT),
           CAST(:jti AS VARCHAR), CAST(:stamp AS BIGINT), CAST(:expires_at AS BIGINT),
           CAST(:user_agent AS VARCHAR), CAST(:ip_address AS VARCHAR), CAST(:amr AS VARCHAR),
           CAST(:password_version AS INTEGER)
    FROM consumed
    RETURNING id
    """)


# A code's consumption and its first refresh token, as a rotation (the conditions and locks of _CONSUME_CODE).
_CONSUME_CODE_POSTGRESQL = _then_successor("""
        UPDATE authorization_codes SET consumed_at = :consumed_at, issued_jti = :code_jti,
               access_expires_at = CAST(:access_expires_at AS BIGINT)
        WHERE id = (SELECT id FROM authorization_codes AS locked_code WHERE id = :code_id FOR NO KEY UPDATE)
          AND consumed_at IS NULL AND expires_at >= :consumed_at
          AND (session_id IS NULL OR EXISTS (SELECT 1 FROM user_sessions
                                             WHERE public_sid = authorization_codes.session_id AND revoked_at IS NULL
                                             FOR SHARE))
        RETURNING family_id""")


def insert_code(values: dict) -> None:
    """Store a new code (committed): `values` has every name of _CODE_FIELDS."""
    write((_INSERT_CODE, values))


def code_grant(code_hash: str) -> CodeGrant | None:
    """The code with this handle, its user and its unrevoked session's times, as committed (read only)."""
    found = autocommit_connection().first(_CODE_GRANT, {"code_hash": code_hash})
    return None if found is None else CodeGrant._make(found)


class CodeState(Enum):
    """Where a code stands, as committed (code_state): what a redemption that lost answers."""
    GONE = "gone"  # deleted (`users remove` and `clients remove` delete it)
    CONSUMED = "consumed"  # redeemed or burnt
    SESSION_ENDED = "session ended"  # unused; the browser session that minted it was signed out
    EXPIRED = "expired"  # unused, its session not ended, expired at the stamp asked about
    REDEEMABLE = "redeemable"  # all the consuming statement asks, at that stamp


# with the user's password version as committed (the rule it is judged by is the service's)
_CODE_STATE = (select(_CODES.c.consumed_at.is_(None).label("unused"),
                      (_CODES.c.expires_at >= bindparam("stamp")).label("unexpired"),
                      _SESSION_NOT_ENDED.label("session_live"), User.password_version)
               .join_from(_CODES, User, User.id == _CODES.c.user_id).where(_CODES.c.id == bindparam("code_id")))
CodeNow = namedtuple("CodeNow", "state password_version session_live")


def code_state(code_id: int, stamp: int) -> CodeNow:
    """The code's state at `stamp`, its user's password version and whether its session is
    unrevoked (or it has none), as committed, in one read. REDEEMABLE is all the consuming
    statement asks (a statement that found its session's public id just handed over to a new
    sign-in in the same browser did not find the session)."""
    found = autocommit_connection().first(_CODE_STATE, {"code_id": code_id, "stamp": stamp})
    if found is None:
        return CodeNow(CodeState.GONE, None, False)
    unused, unexpired, session_live, password_version = found
    if not unused:
        state = CodeState.CONSUMED
    elif not session_live:
        state = CodeState.SESSION_ENDED
    else:
        state = CodeState.REDEEMABLE if unexpired else CodeState.EXPIRED
    return CodeNow(state, password_version, bool(session_live))


def burn_code(code_id: int, stamp: int, *, then: Write | None = None) -> bool:
    """Consume a code without issuing anything, and only if that consumed it, `then` (committed);
    whether it did."""
    return write_if((_BURN_CODE, {"code_id": code_id, "stamp": stamp}), then)


def consume_code(code_id: int, *, stamp: int, access_token_jti: str | None, successor: dict | None,
                 access_expires_at: int | None = None) -> bool:
    """Consume an unused, unexpired code, recording the access token it produced, and store the
    first refresh token of its family (`successor`, see `successor_values`), committed, once:
    True for the one caller that wins; otherwise nothing is written.

    On PostgreSQL, a code and its refresh token are one statement (one round trip, where BEGIN,
    the two statements and COMMIT took four), unless the session holds a transaction (writes.py).
    """
    # separate parameter sets: the session would add any key named like a column to the UPDATE
    consume = {"code_id": code_id, "stamp": stamp, "jti": access_token_jti, "access_expires_at": access_expires_at}
    if successor is None:
        return write_if((_CONSUME_CODE, consume), None)
    durable = durable_alone(autocommit_connection())
    if durable is None:
        return write_if((_CONSUME_CODE, consume), (_INSERT_SUCCESSOR, successor))
    params = {**successor, "code_id": code_id, "consumed_at": stamp, "code_jti": access_token_jti,
              "access_expires_at": access_expires_at}
    return durable.write_first(_CONSUME_CODE_POSTGRESQL, params) is not None


def code_after_consume(code_id: int, stamp: int) -> CodeNow | None:
    """After a winning consume, on PostgreSQL: code_state as committed now (the user's password
    version, whether the code's session was revoked since), in one read. On SQLite None, with no
    read: there a password change holds the database's one write lock, so a consume that waited
    for it found its code expired, and a code minted while it ran waited for its commit and was
    stored under the version its request had read, refused when the code was read (services:
    issued_under_current_password)."""
    if autocommit_connection().is_sqlite:
        return None
    return code_state(code_id, stamp)


_CODE_NONCE_WHERE = (_CODES.c.client_id == bindparam("client_id"), _CODES.c.nonce == bindparam("nonce"),
                     _CODES.c.expires_at > bindparam("stamp"))
_CODE_NONCE = select(_CODES.c.id).where(*_CODE_NONCE_WHERE).limit(1)
# the same, of another user than the one asking
_CODE_NONCE_OTHER_USER = select(_CODES.c.id).where(*_CODE_NONCE_WHERE, _CODES.c.user_id != bindparam("user_id")).limit(1)


def _code_nonce(client_id: str, nonce: str, stamp: int, user_id: int | None) -> tuple:
    params = {"client_id": client_id, "nonce": nonce, "stamp": stamp}
    if user_id is None:
        return _CODE_NONCE, params
    return _CODE_NONCE_OTHER_USER, {**params, "user_id": user_id}


def code_nonce_query(client_id: str, nonce: str, stamp: int, user_id: int | None = None) -> Select:
    """A code of this client that expires after `stamp` and carries this nonce (issued to another
    user than `user_id`, if given): one lookup in the (client_id, nonce) index, where the
    expires_at index alone walked every live code."""
    statement, params = _code_nonce(client_id, nonce, stamp, user_id)
    return statement.params(**params)


def code_nonce_seen(client_id: str, nonce: str, stamp: int, user_id: int | None = None) -> bool:
    """True when a code of this client that expires after `stamp` carries this nonce (issued to
    another user than `user_id`, if given). Every authorization request with a nonce asks (twice
    in a sign-in): one read on the autocommit connection, where through the session it built the
    query, checked out a connection and, on PostgreSQL, cost a ping, a BEGIN and a ROLLBACK besides."""
    return autocommit_connection().first(*_code_nonce(client_id, nonce, stamp, user_id)) is not None


#: the expiry of a code ended before its time: before every clock's now
CODE_ENDED_AT = 0


def expire_user_codes(user_id: int, live_after: int) -> None:
    """End every unused code of a user that expires after `live_after`, in the session's
    transaction: its expiry set to CODE_ENDED_AT, in the past on every instance's clock. (Set to
    the ender's own now - 1, it stayed redeemable on an instance whose clock read a second or
    more behind: the consuming statement's `expires_at >= stamp` held there.)"""
    db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.user_id == user_id, AuthorizationCode.consumed_at.is_(None),
               AuthorizationCode.expires_at > live_after)
        .values(expires_at=CODE_ENDED_AT)
    )


# --- refresh tokens ------------------------------------------------------------------------
# The hot path of a rotation: one read (the token and the user its access token is for), then
# one write that consumes it and stores its successor, both on the autocommit connection.
_REFRESH_GRANT = (
    select(RefreshToken.id, RefreshToken.family_id, RefreshToken.client_id, RefreshToken.user_id,
           RefreshToken.session_id, RefreshToken.scope, RefreshToken.auth_time, RefreshToken.expires_at,
           RefreshToken.issued_at, RefreshToken.consumed_at, RefreshToken.revoked_at, RefreshToken.amr,
           RefreshToken.password_version.label("issued_password_version"), User.subject, User.password_version,
           User.enabled, User.email_verified)  # a client's require_verified_email (oauth2/grant_types.py)
    .join(User, User.id == RefreshToken.user_id)
    .where(RefreshToken.token_hash == bindparam("token_hash"))
)
RefreshGrant = namedtuple("RefreshGrant", [column.key for column in _REFRESH_GRANT.selected_columns])

_CONSUME = (
    update(RefreshToken)
    .where(RefreshToken.id == bindparam("rid"), RefreshToken.consumed_at.is_(None), RefreshToken.revoked_at.is_(None))
    .values(consumed_at=bindparam("stamp"))
)
_CONSUME_RETURNING = _CONSUME.returning(RefreshToken.id)
_INSERT_SUCCESSOR = insert(RefreshToken).values(
    token_hash=bindparam("new_hash"), family_id=bindparam("family_id"), client_id=bindparam("client_id"),
    user_id=bindparam("user_id"), session_id=bindparam("session_id"), scope=bindparam("scope"),
    auth_time=bindparam("auth_time"), access_token_jti=bindparam("jti"), issued_at=bindparam("stamp"),
    expires_at=bindparam("expires_at"), user_agent=bindparam("user_agent"), ip_address=bindparam("ip_address"),
    amr=bindparam("amr"), password_version=bindparam("password_version"),
)
# PostgreSQL: both in one statement (_then_successor).
_ROTATE_POSTGRESQL = _then_successor("""
        UPDATE refresh_tokens SET consumed_at = :stamp
        WHERE id = :rid AND consumed_at IS NULL AND revoked_at IS NULL
        RETURNING family_id""")


def successor_values(grant, token_hash: str | None, *, scope: str, access_token_jti: str | None, stamp: int,
                     expires_at: int, user_agent: str | None = None, ip_address: str | None = None) -> dict:
    """A new refresh token in the family of `grant` (a code or the refresh token it replaces),
    issued with the access token `access_token_jti` to a caller with this user agent and address,
    under the user's password version as the grant was read with it (the access token's): for
    `consume_code` and `rotate_refresh_token`."""
    return {
        "new_hash": token_hash, "family_id": grant.family_id,
        "client_id": grant.client_id, "user_id": grant.user_id, "session_id": grant.session_id, "scope": scope,
        "auth_time": grant.auth_time, "jti": access_token_jti, "stamp": stamp, "expires_at": expires_at,
        "user_agent": user_agent, "ip_address": ip_address, "amr": grant.amr,
        "password_version": grant.password_version,
    }


def refresh_grant(token_hash: str) -> RefreshGrant | None:
    """The refresh token with this handle and its user, as committed (read only)."""
    found = autocommit_connection().first(_REFRESH_GRANT, {"token_hash": token_hash})
    return None if found is None else RefreshGrant._make(found)


def rotate_refresh_token(token_id: int, values: dict, *, with_successor: bool) -> bool:
    """Consume an unused, unrevoked refresh token and (`with_successor`) store its successor
    (`values`, see `successor_values`), committed, once: True for the one caller that wins.

    One statement on PostgreSQL, one BEGIN IMMEDIATE transaction on SQLite.
    """
    params = {**values, "rid": token_id}
    connection = autocommit_connection()
    if connection.is_sqlite:
        return write_if((_CONSUME, params), (_INSERT_SUCCESSOR, params) if with_successor else None)
    if with_successor:
        return connection.write_first(_ROTATE_POSTGRESQL, params) is not None
    return connection.write_first(_CONSUME_RETURNING, params) is not None


_REFRESH_TOKEN_USED = select(RefreshToken.id).where(RefreshToken.id == bindparam("rid"),
                                                    RefreshToken.consumed_at.is_not(None))


def refresh_token_used(token_id: int) -> bool:
    """Whether the refresh token's row is there and was consumed (rotated), as committed: not one
    deleted (`users remove`, `clients remove`) or revoked unused."""
    return autocommit_connection().first(_REFRESH_TOKEN_USED, {"rid": token_id}) is not None


def add_refresh_token(**columns) -> RefreshToken:
    """A new refresh token row, added to the session's transaction."""
    row = RefreshToken(**columns)
    db.session.add(row)
    return row


_REFRESH_TOKEN_COLUMNS = ("token_hash", "family_id", "client_id", "user_id", "session_id", "scope", "auth_time",
                          "access_token_jti", "amr", "issued_at", "expires_at", "user_agent", "ip_address",
                          "password_version")
_INSERT_IF_STILL = insert_if(RefreshToken.__table__, _REFRESH_TOKEN_COLUMNS, STILL_SIGNED_IN_LOCKED)


def add_refresh_token_if_still(**columns) -> bool:
    """Insert a refresh token row in the session's transaction only while its user is enabled
    with its `password_version` (one statement); whether it was. The user's row is locked FOR SHARE
    (STILL_SIGNED_IN_LOCKED): a password change under way, which has revoked the user's refresh
    tokens already, is waited for, and this one is not stored after it."""
    params = {**columns, **still_user(columns["user_id"], columns["password_version"])}
    return db.session.execute(_INSERT_IF_STILL, params).rowcount == 1


def refresh_token_row(token_hash: str) -> RefreshToken | None:
    return db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))


# --- families and revocation (in the session's transaction) --------------------------------
def family_access_token_jtis(families, issued_since: int, *, unrevoked_only: bool = False) -> set[str]:
    """Every access token issued in these families that may still live: at the front channel with
    the code (hybrid), when the code was redeemed, and with each refresh token issued from
    `issued_since` (a rotated one is kept for weeks; the access token issued with it is not).
    With `unrevoked_only`, those not on the revocation list yet.

    `families`: a few ids, or a query of them (user_code_families, user_client_families). A
    user's every family goes to the database as a subquery, never as a list: an account that
    signs in every second keeps 86,400 codes a day, and PostgreSQL takes at most 65,535
    parameters in a statement."""
    if isinstance(families, (list, tuple, set, frozenset)) and not families:
        return set()
    issued = union(
        select(RefreshToken.access_token_jti.label("jti"))
        .where(RefreshToken.family_id.in_(families), RefreshToken.issued_at >= issued_since),
        select(AuthorizationCode.issued_jti).where(AuthorizationCode.family_id.in_(families)),
        select(AuthorizationCode.front_channel_jti).where(AuthorizationCode.family_id.in_(families))).subquery()
    query = select(issued.c.jti).where(issued.c.jti.is_not(None))
    if unrevoked_only:
        query = query.where(~exists().where(RevokedAccessToken.jti == issued.c.jti))
    return set(db.session.scalars(query))


def _revoke_until_none_left(*conditions, stamp: int) -> int:
    """Mark revoked every refresh token that meets `conditions`, successors of rotations in
    flight included: the UPDATE runs again until it changes nothing.

    A rotation in flight holds its token's row until it commits its successor (one statement on
    PostgreSQL). An UPDATE that waited for that row revokes it once the rotation commits, but not
    the successor, which PostgreSQL's UPDATE does not see (READ COMMITTED: it began before that
    commit); the next UPDATE does, and the rows this one revoked stay locked until the caller
    commits, so no rotation can start from them. On SQLite the first UPDATE takes the write
    lock: the second changes nothing. How many it revoked (0: none was left, another
    transaction that committed first revoked them).
    """
    revoke = _revoke(conditions, stamp)
    revoked = 0
    while changed := db.session.execute(revoke).rowcount:
        revoked += changed
    return revoked


def _revoked_until_none_left(*conditions, stamp: int, returning: tuple) -> list:
    """As _revoke_until_none_left, returning the rows it revoked as the `returning` columns
    instead of their count (for a caller that needs to know which: the rows cost a fetch)."""
    revoke = _revoke(conditions, stamp).returning(*returning)
    revoked: list = []
    while changed := db.session.execute(revoke).all():
        revoked += changed
    return revoked


def _revoke(conditions: tuple, stamp: int):
    return update(RefreshToken).where(*conditions, RefreshToken.revoked_at.is_(None)).values(revoked_at=stamp)


def revoke_family_tokens(family_id: str, stamp: int) -> int:
    """Mark every refresh token of a family revoked; how many were not yet."""
    return _revoke_until_none_left(RefreshToken.family_id == family_id, stamp=stamp)


def family_has_refresh_tokens(family_id: str) -> bool:
    """Whether a family has refresh tokens at all (not a code's alone), revoked or not."""
    return db.session.scalar(select(exists().where(RefreshToken.family_id == family_id)))


def user_client_families(user_id: int, client_id: str) -> CompoundSelect:
    """The families of every refresh token and code a user granted to a client, as a query (for
    family_access_token_jtis: there may be more of them than a statement takes parameters)."""
    return union(select(RefreshToken.family_id).where(RefreshToken.user_id == user_id,
                                                      RefreshToken.client_id == client_id),
                 select(AuthorizationCode.family_id).where(AuthorizationCode.user_id == user_id,
                                                           AuthorizationCode.client_id == client_id))


def user_client_standalone_jtis(user_id: int, client_id: str, stamp: int) -> set[str]:
    """The access tokens of no family issued to a client for a user that expire at `stamp` or later."""
    return set(db.session.scalars(select(StandaloneAccessToken.jti).where(
        StandaloneAccessToken.user_id == user_id, StandaloneAccessToken.client_id == client_id,
        StandaloneAccessToken.expires_at >= stamp)))


def user_code_families(user_id: int) -> Select:
    """The families of every code of a user still kept (a code's row outlives any access token
    its redemption issued: CODE_TOMBSTONE_SECONDS), as a query (for family_access_token_jtis:
    there may be more of them than a statement takes parameters)."""
    return select(AuthorizationCode.family_id).where(AuthorizationCode.user_id == user_id)


def user_standalone_jtis(user_id: int, stamp: int, *, unrevoked_only: bool = False) -> set[str]:
    """The access tokens of no family issued to any client for a user that expire at `stamp` or
    later; with `unrevoked_only`, those not on the revocation list yet."""
    query = select(StandaloneAccessToken.jti).where(StandaloneAccessToken.user_id == user_id,
                                                    StandaloneAccessToken.expires_at >= stamp)
    if unrevoked_only:
        query = query.where(~exists().where(RevokedAccessToken.jti == StandaloneAccessToken.jti))
    return set(db.session.scalars(query))


def revoke_user_client_rows(user_id: int, client_id: str, stamp: int) -> None:
    """Consume the client's unused codes of a user and revoke every refresh token the user
    granted to the client: codes first, so that the first refresh token of a code redeemed
    meanwhile is revoked too."""
    _consume_codes(AuthorizationCode.user_id == user_id, AuthorizationCode.client_id == client_id, stamp=stamp)
    _revoke_until_none_left(RefreshToken.user_id == user_id, RefreshToken.client_id == client_id, stamp=stamp)


def revoke_client_rows(client_id: str, stamp: int) -> int:
    """Consume every unused code of a client and revoke every refresh token it holds, for all
    its users (codes first, as in revoke_user_client_rows); how many codes and tokens it ended."""
    consumed = _consume_codes(AuthorizationCode.client_id == client_id, stamp=stamp)
    return consumed + _revoke_until_none_left(RefreshToken.client_id == client_id, stamp=stamp)


def _consume_codes(*conditions, stamp: int) -> int:
    return db.session.execute(update(AuthorizationCode).where(*conditions, AuthorizationCode.consumed_at.is_(None))
                              .values(consumed_at=stamp)).rowcount


def clients_and_scopes_of_user_grants(user_ids: list[int]) -> tuple[set[str], set[str]]:
    """The clients of these users' unused codes and unrevoked refresh tokens, and the scopes
    they carry: the rows a revocation of their grants ends (services/seed.py locks these
    clients' and API scopes' rows first)."""
    if not user_ids:
        return set(), set()
    codes = select(AuthorizationCode.client_id, AuthorizationCode.scope).where(
        AuthorizationCode.user_id.in_(user_ids), AuthorizationCode.consumed_at.is_(None))
    tokens = select(RefreshToken.client_id, RefreshToken.scope).where(RefreshToken.user_id.in_(user_ids),
                                                                      RefreshToken.revoked_at.is_(None))
    rows = db.session.execute(union(codes, tokens)).all()
    return {client_id for client_id, _ in rows}, {word for _, scope in rows for word in scope.split()}


def delete_user_grants(user_id: int) -> None:
    """Delete every consent, code and refresh token of a user, in the session's transaction, in
    the order every writer of more than one of them takes them (a client's removal, a scope's,
    an app revoked by its user; a password change's codes, then its refresh tokens): two such
    transactions at once queue, where the other way round each waited for the other's rows."""
    for model in (Consent, AuthorizationCode, RefreshToken):
        db.session.execute(delete(model).where(model.user_id == user_id))


def revoke_user_refresh_tokens(user_id: int, stamp: int) -> set[tuple[str, str | None]]:
    """Revoke every refresh token of a user (after expire_user_codes, for the same reason as in
    revoke_user_client_rows): the (client_id, session_id) of each family whose usable token (not
    consumed, not expired) this revoked, for their clients' logout notices. Taken from the
    revocation itself, not read before it: on PostgreSQL a code redeemed between such a read and
    the UPDATE has its refresh token revoked here, and its client must be told too."""
    revoked = _revoked_until_none_left(RefreshToken.user_id == user_id, stamp=stamp, returning=(
        RefreshToken.client_id, RefreshToken.session_id, RefreshToken.consumed_at, RefreshToken.expires_at))
    return {(client_id, session_id) for client_id, session_id, consumed_at, expires_at in revoked
            if consumed_at is None and expires_at >= stamp}


# --- access tokens of no family ------------------------------------------------------------
_INSERT_STANDALONE = insert(StandaloneAccessToken.__table__).values(
    jti=bindparam("jti"), user_id=bindparam("user_id"), client_id=bindparam("client_id"),
    issued_at=bindparam("issued_at"), expires_at=bindparam("expires_at"),
    password_version=bindparam("password_version"))


def insert_standalone_access_token(jti: str, *, user_id: int, client_id: str, issued_at: int, expires_at: int,
                                   password_version: int | None) -> None:
    """Record an access token of no family until it expires (committed)."""
    write((_INSERT_STANDALONE, {"jti": jti, "user_id": user_id, "client_id": client_id, "issued_at": issued_at,
                                "expires_at": expires_at, "password_version": password_version}))


# --- a scope that no longer exists ---------------------------------------------------------
def drop_scope(name: str, stamp: int) -> int:
    """Take the scope `name` out of every remembered consent and every code and refresh token
    still open (not consumed, revoked or expired), in the session's transaction; how many rows it
    changed. A LIKE narrows the rows read; each is checked word by word.

    The caller holds the scope's row (remove_api_scope deletes it first), and this takes the
    rows of every user carrying it in the order it finds them: consents, then codes, then
    refresh tokens (as clients._delete_issued). The seed, which ends several users' codes and
    refresh tokens user after user, takes the rows of the API scopes those carry before the
    users' (seed._lock_in_one_order): it queues behind the removal, or the removal behind it."""
    changed = 0
    quoted = json.dumps(name)
    for consent in db.session.scalars(select(Consent).where(cast(Consent.scopes, String).like(f"%{quoted}%"))):
        if name in consent.scopes:
            consent.scopes = [scope for scope in consent.scopes if scope != name]
            changed += 1
    for model, open_now in ((AuthorizationCode, and_(AuthorizationCode.consumed_at.is_(None),
                                                     AuthorizationCode.expires_at >= stamp)),
                            (RefreshToken, and_(RefreshToken.consumed_at.is_(None), RefreshToken.revoked_at.is_(None),
                                                RefreshToken.expires_at >= stamp))):
        rows = db.session.execute(select(model.id, model.scope).where(open_now, model.scope.like(f"%{name}%"))).all()
        for row_id, scope in rows:
            words = scope.split()
            if name in words:
                db.session.execute(update(model).where(model.id == row_id, model.scope == scope)
                                   .values(scope=" ".join(word for word in words if word != name)))
                changed += 1
    return changed

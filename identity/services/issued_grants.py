"""Persisted grants: authorization codes (single use, tombstoned) and refresh tokens (rotated, by family).

Codes and refresh tokens are stored as SHA-256 handles. Consuming either is one conditional
UPDATE (`... WHERE consumed_at IS NULL`), so of two simultaneous redemptions exactly one wins;
the loser is treated as a replay and the whole family it belongs to is revoked.

This module says what happens to a grant; identity/store/issued_grants.py holds the statements and
decides how each write is committed (connection, transaction, dialect).
"""

import secrets
from collections import namedtuple

from flask import current_app
from sqlalchemy import and_, or_

from ..clock import now
from ..constants import ACCESS_TOKEN_LIFETIME_MAX
from ..current import current_application
from ..extensions import db
from ..models import RefreshToken
from ..store import issued_grants as store
from ..store.tokens import all_revoked
from ..store.issued_grants import CodeGrant, CodeState, RefreshGrant
from . import audit, logout, metrics, tokens
from .bearer_cache import CLOCK_DIFFERENCE_ALLOWED_SECONDS, accepted_past_expiry
from .browser_sessions import times_are_live
from .tokens import revoke_jtis, token_hash
from .user_agents import caller_device


# what issuing an access token reads (and, from a code, the ID token's email claims)
TokenUser = namedtuple("TokenUser", "id subject password_version email email_verified", defaults=(None, False))


def new_family_id() -> str:
    return secrets.token_urlsafe(16)


def save_authorization_code(code: str, *, client_id: str, user_id: int, session_id: str | None, redirect_uri: str,
                            response_type: str, scope: str, nonce: str | None, code_challenge: str | None,
                            code_challenge_method: str | None, auth_time: int,
                            front_channel_jti: str | None = None, amr: str | None = None,
                            access_expires_at: int | None = None, password_version: int | None = None) -> None:
    """Store a new code; `front_channel_jti` is the access token a hybrid response sent with it,
    which expires at `access_expires_at`; `password_version`, the user's as the session was read
    with it (the code redeems only while the user has it: issued_under_current_password)."""
    stamp = now()
    params = {
        "code_hash": token_hash(code), "client_id": client_id, "user_id": user_id, "session_id": session_id,
        "redirect_uri": redirect_uri, "response_type": response_type, "scope": scope, "nonce": nonce,
        "code_challenge": code_challenge, "code_challenge_method": code_challenge_method, "auth_time": auth_time,
        "created_at": stamp, "expires_at": stamp + current_app.config["AUTHORIZATION_CODE_LIFETIME_SECONDS"],
        "family_id": new_family_id(), "front_channel_jti": front_channel_jti, "amr": amr,
        "access_expires_at": access_expires_at, "password_version": password_version,
    }
    store.insert_code(params)


def code_ends_at(expires_at: int, created_at: int) -> int:
    """When a stored code stops being redeemable: at its expiry, or sooner at
    AUTHORIZATION_CODE_LIFETIME_SECONDS after it was issued (a code issued before the setting was
    made shorter), as refresh_token_ends_at does for refresh tokens."""
    return min(expires_at, created_at + current_app.config["AUTHORIZATION_CODE_LIFETIME_SECONDS"])


def issued_under_current_password(issued_version: int | None, current_version: int) -> bool:
    """Whether a code or refresh token stored under the user's password version `issued_version`
    is still good for a user whose version is now `current_version` (None: stored before codes
    and refresh tokens kept it, judged as before).

    A password change, reset or disable moves the version on, and revokes (or expires) the user's
    codes and refresh tokens; but on PostgreSQL an insert referring to the user is not held off by
    its lock on the user's row, so one stored while it ran, under the old version, was not seen by
    its revocation: a code minted with a copy of the changing browser's cookie (a session the
    change keeps), a refresh token of a code redeemed meanwhile. Those end here, when used."""
    return issued_version is None or issued_version == current_version


def find_authorization_code(code: str, client_id: str) -> CodeGrant | None:
    """Return a code this client may redeem, with its user (read only); None if unknown, another
    client's, expired, already used, minted under a password version the user no longer has, or
    minted by a browser session that has ended.

    A second use revokes what the first use issued (RFC 6749 section 4.1.2). A code offered by
    another client, or whose session has ended, is burnt: any later attempt is a replay.
    """
    row = store.code_grant(token_hash(code))
    if row is None:
        return None
    if row.consumed_at is not None:
        revoke_family(row.family_id, reason="authorization_code_replayed", user_id=row.user_id,
                      client_id=row.client_id)
        return None
    if code_ends_at(row.expires_at, row.created_at) < now():
        return None
    if not issued_under_current_password(row.minted_password_version, row.password_version):
        return None  # ended by a password change, as an expired code (end_user_codes) is
    if row.client_id != client_id:
        burn_authorization_code(row, client_id, "invalid_grant", f"the code was issued to another client ({row.client_id})")
        return None
    if not times_are_live(row.session_created_at, row.session_last_seen_at):
        burn_authorization_code(row, client_id, "invalid_grant", SESSION_ENDED)
        return None
    return row


#: a code deleted, with its user or its client, while it was being redeemed
CODE_GONE = "the authorization code is no longer valid"
#: a code that expired unused before its redemption could spend it: the token endpoint's answer
#: to a code it reads expired (Authlib's, for a code it finds no use of)
CODE_EXPIRED = "Invalid 'code' in request."
#: a code refused because its browser session ended (signed out, idle, too old) before it was redeemed
SESSION_ENDED = "the browser session that minted the code has ended"


def burn_authorization_code(row: CodeGrant, client_id: str, error: str, description: str | None) -> None:
    """Consume a code without issuing anything: a failed redemption attempt ends it (RFC 9700
    section 2.1.1), so a guessed PKCE verifier or redirect URI gets no second try. The attempt is
    audited (`authorization_code_refused`: the client that offered it, the code's user, the error
    and its description; never the code or the verifier), once: by the attempt that burnt it."""
    refused = audit.event_write("authorization_code_refused", user_id=row.user_id, client_id=client_id,
                                detail={"error": error, "description": description or ""})
    store.burn_code(row.id, now(), then=refused)


def end_user_codes(user_id: int) -> None:
    """Expire every unused code of a user (a password change: codes minted before it must not
    redeem), also one that has expired by this clock but not by another instance's, which may read
    CLOCK_DIFFERENCE_ALLOWED_SECONDS behind; the caller commits."""
    store.expire_user_codes(user_id, now() - CLOCK_DIFFERENCE_ALLOWED_SECONDS)


def user_of_grant(grant: "CodeGrant | RefreshGrant") -> "TokenUser":
    """The user a code or refresh token was read with, as issuing an access token reads it."""
    return TokenUser(grant.user_id, grant.subject, grant.password_version, getattr(grant, "email", None),
                     bool(getattr(grant, "email_verified", False)))


def _successor(grant, token: str | None, *, scope: str, access_token_jti: str | None, stamp: int) -> dict:
    """A new refresh token in the family of `grant` (a code or the refresh token it replaces),
    issued with the access token `access_token_jti`."""
    device = caller_device()
    return store.successor_values(grant, token_hash(token) if token else None, scope=scope,
                                  access_token_jti=access_token_jti, stamp=stamp,
                                  expires_at=refresh_token_expiry(stamp, grant.auth_time),
                                  user_agent=device.user_agent, ip_address=device.ip_address)


def _family_end(auth_time: int | None) -> int | None:
    """When a refresh token family ends: REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS after the sign-in
    it began with, however often it was used."""
    if auth_time is None:
        return None
    return auth_time + current_application().config["REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS"]


def refresh_token_ends_at(expires_at: int, auth_time: int | None, issued_at: int | None = None) -> int:
    """When a stored refresh token stops being usable: at its expiry, or sooner at
    REFRESH_TOKEN_LIFETIME_SECONDS after it was issued (`issued_at`) or at its family's end (a
    token issued before either setting was made shorter)."""
    ends = [expires_at]
    if issued_at is not None:
        ends.append(issued_at + current_application().config["REFRESH_TOKEN_LIFETIME_SECONDS"])
    end = _family_end(auth_time)
    if end is not None:
        ends.append(end)
    return min(ends)


def refresh_token_usable(expires_at: int, auth_time: int | None, stamp: int, issued_at: int | None = None) -> bool:
    """Whether a stored refresh token is still within its time at `stamp` (refresh_token_ends_at):
    the refresh grant's rule, which introspection and the lists of apps apply too."""
    return refresh_token_ends_at(expires_at, auth_time, issued_at) >= stamp


def usable_refresh_tokens(stamp: int):
    """refresh_token_usable as a condition on refresh_tokens, for a query that must not read
    each token (a user's tokens of one app are counted in it, not listed)."""
    absolute = current_app.config["REFRESH_TOKEN_ABSOLUTE_LIFETIME_SECONDS"]
    return and_(RefreshToken.expires_at >= stamp,
                RefreshToken.issued_at + current_app.config["REFRESH_TOKEN_LIFETIME_SECONDS"] >= stamp,
                or_(RefreshToken.auth_time.is_(None), RefreshToken.auth_time + absolute >= stamp))


def refresh_token_expiry(stamp: int, auth_time: int | None) -> int:
    """When a refresh token issued at `stamp` expires: REFRESH_TOKEN_LIFETIME_SECONDS later (the
    lifetime slides with each rotation), but never after its family ends."""
    return refresh_token_ends_at(stamp + current_application().config["REFRESH_TOKEN_LIFETIME_SECONDS"], auth_time)


def redeem_authorization_code(row: CodeGrant, refresh_token: str | None, *, scope: str,
                              access_token_jti: str | None, access_expires_at: int | None = None) -> str | None:
    """Consume a code, recording the access token it produced, and store the first refresh token of
    its family, once: None for the one request that wins; for another, why it lost.

    Called after the tokens are signed, so the write is short (store.consume_code). A loser whose
    code was deleted since the read (`users remove`, `clients remove`) has nothing to revoke; one
    whose code's session was signed out since burns the code, as the read would have; one whose
    code expired unused since (a password change that kept its session) is answered as the read
    answers an expired code, and records nothing; any other loser revokes what the winner issued.
    A winner whose code a password change has outdated since the read revokes what it issued
    (_unless_outdated_by_a_password_change) and is answered as for an expired code.
    """
    stamp = now()
    successor = _successor(row, refresh_token, scope=scope, access_token_jti=access_token_jti, stamp=stamp)

    def consume() -> bool:
        return store.consume_code(row.id, stamp=stamp, access_token_jti=access_token_jti,
                                  access_expires_at=access_expires_at, successor=successor if refresh_token else None)

    if consume():
        return _unless_outdated_by_a_password_change(row, stamp, with_refresh_token=bool(refresh_token))
    state = store.code_state(row.id, stamp).state
    # again, once, if nothing stands in its way now: its session's public id was being handed over
    # to a new sign-in in the same browser (continue_session) as the statement looked for it
    if state is CodeState.REDEEMABLE:
        if consume():
            return _unless_outdated_by_a_password_change(row, stamp, with_refresh_token=bool(refresh_token))
        state = store.code_state(row.id, stamp).state
    if state is CodeState.GONE:  # deleted with its user or client since it was read: nothing to revoke
        return CODE_GONE
    if state is CodeState.SESSION_ENDED:  # signed out since the code was read: not a replay
        burn_authorization_code(row, row.client_id, "invalid_grant", SESSION_ENDED)
        return SESSION_ENDED
    if state is not CodeState.CONSUMED:  # unused, expired since the read (a password change expires codes)
        return CODE_EXPIRED
    revoke_family(row.family_id, reason="authorization_code_replayed", user_id=row.user_id, client_id=row.client_id)
    return "authorization code was already used"


def _unless_outdated_by_a_password_change(row: CodeGrant, stamp: int, *, with_refresh_token: bool) -> str | None:
    """After a winning consume: None, or CODE_EXPIRED once the family it issued is revoked as a
    password change revokes its user's (`password_changed`: refresh token, access tokens, the
    client's logout token) if the user's password version as committed is no longer the code's.

    On PostgreSQL a code minted by the session a change keeps (a copy of its old cookie), after
    the change expired her codes, is read before its commit and spent after: its statement waits
    at the kept session's row, then finds it live. After the change's sessions step every
    redemption either committed before its refresh tokens' revocation (which revokes its token)
    or waited for its commit (the session's row): a read after the consume sees the new version.
    On SQLite the change holds the one write lock, so a stale code is expired or read after it:
    nothing is read there. A code without a stored version (NULL) is judged as before.

    What moved the version may have ended the family itself, having committed after the consume
    (`users disable`, `sessions end USER`, a change that signed the code's browser out): it revoked
    the refresh token, or, for a code's family alone, ended the code's session and told its
    clients. That family is left as it is: nothing recorded (a second token_revoked event, named
    password_changed) or told (a second logout token for the same session and client)."""
    if row.minted_password_version is None:
        return None
    after = store.code_after_consume(row.id, stamp)
    if after is None or after.state is CodeState.GONE \
            or issued_under_current_password(row.minted_password_version, after.password_version):
        return None
    if with_refresh_token or after.session_live:
        revoke_family(row.family_id, reason="password_changed", user_id=row.user_id, client_id=row.client_id,
                      only_if_live=with_refresh_token)
    return CODE_EXPIRED


def code_nonce_seen(client_id: str, nonce: str, user_id: int | None) -> bool:
    """True when a live code of this client already carries this nonce (a replayed request) and
    was issued to another user than `user_id`; False while no one is signed in (`user_id` None).

    The same user's code is the same person's request sent again (a double-clicked "Sign in",
    which answers with the code itself; a reload of the consent): refusing it sent the app an
    error in place of the sign-in. Another user's code with the nonce is what the check is for:
    a request made with a nonce taken from someone else's (an injected sign-in). Who that is is
    not known before the sign-in, which asks again when it resumes the request: refused here,
    the request opened again after a sign-out (Back, or the app sending it again) answered the
    app "Replay attack" in place of the sign-in page."""
    if user_id is None:
        return False
    return store.code_nonce_seen(client_id, nonce, now(), user_id)


def save_refresh_token(token: str, *, family_id: str, client_id: str, user_id: int, session_id: str | None,
                       scope: str, auth_time: int | None, access_token_jti: str | None,
                       amr: str | None = None, password_version: int | None = None) -> bool:
    """Store a refresh token in the session's transaction. With `password_version` (the one the
    password grant checked), only while the user is enabled with it: False if not stored."""
    stamp = now()
    device = caller_device()
    columns = dict(
        token_hash=token_hash(token), family_id=family_id, client_id=client_id, user_id=user_id,
        session_id=session_id, scope=scope, auth_time=auth_time, access_token_jti=access_token_jti, amr=amr,
        issued_at=stamp, expires_at=refresh_token_expiry(stamp, auth_time),
        user_agent=device.user_agent, ip_address=device.ip_address, password_version=password_version,
    )
    if password_version is None:
        store.add_refresh_token(**columns)
        return True
    return store.add_refresh_token_if_still(**columns)


def keep_issued_tokens(refresh_token: str | None, *, family_id: str | None, client_id: str, user_id: int | None,
                       session_id: str | None, scope: str, auth_time: int | None, access_token_jti: str | None,
                       expires_in: int, amr: str | None = None, password_version: int | None = None) -> bool:
    """Persist what must outlive a token response that rotated nothing, committed: a new refresh
    token (in the family of the code it came from, or a new one), or else the access token of a
    user without one (the password grant without offline_access), so it can be revoked later.

    The password grant gives the `password_version` it checked: a password change, reset or
    disable that committed since revoked the user's refresh tokens, and this one is not stored
    after it (False: nothing committed, the caller refuses the grant)."""
    if refresh_token:
        if not save_refresh_token(refresh_token, family_id=family_id or new_family_id(), client_id=client_id,
                                  user_id=user_id, session_id=session_id, scope=scope, auth_time=auth_time,
                                  access_token_jti=access_token_jti, amr=amr, password_version=password_version):
            db.session.rollback()
            return False
    elif user_id is not None and access_token_jti:
        record_standalone_access_token(access_token_jti, user_id=user_id, client_id=client_id, expires_in=expires_in,
                                       password_version=password_version)
    db.session.commit()
    return True


def find_refresh_token(token: str) -> RefreshToken | None:
    return store.refresh_token_row(token_hash(token))


def usable_refresh_token(token: str, client_id: str) -> RefreshGrant | None:
    """Find a refresh token this client may rotate (read only); reuse of a rotated one revokes its family.

    A disabled user's is refused: disabling revokes them all, and this holds whatever a rotation
    in flight at that moment commits. So is one issued under a password version the user no
    longer has (issued_under_current_password)."""
    row = store.refresh_grant(token_hash(token))
    if row is None:
        return None
    stamp = now()
    if row.client_id != client_id or row.revoked_at is not None or not row.enabled:
        return None
    if not issued_under_current_password(row.issued_password_version, row.password_version):
        return None
    if not refresh_token_usable(row.expires_at, row.auth_time, stamp, row.issued_at):
        return None
    if row.consumed_at is not None:
        revoke_family(row.family_id, reason="refresh_token_reused", user_id=row.user_id, client_id=row.client_id)
        return None
    return row


def rotate_refresh_token(row: RefreshGrant, successor: str | None, *, scope: str, access_token_jti: str | None) -> bool:
    """Consume a refresh token and store its successor, once: True for the one request that wins.

    Called after the new tokens are signed, so the write is short (store.rotate_refresh_token).
    The loser's family (the winner's new token included) is revoked, as a reuse, when its token was
    used (consumed by the winner); not that of a token deleted with its user or client since it
    was read (`users remove`, `clients remove`: nothing left to revoke), nor of one revoked unused
    since (a password change or reset, `users disable`, the app's revocation: revoked already).
    Neither was used again, and a reuse is a security alert.

    The successor is never issued before the token it replaces, even when that one was issued by
    an instance whose clock is ahead of this one's: a family's newest token by issued_at is its
    live one, which is how its user's grants are listed and ended (store/refresh_families.py).
    """
    values = _successor(row, successor, scope=scope, access_token_jti=access_token_jti,
                        stamp=max(now(), row.issued_at))
    won = store.rotate_refresh_token(row.id, values, with_successor=bool(successor))
    if not won and store.refresh_token_used(row.id):
        revoke_family(row.family_id, reason="refresh_token_reused", user_id=row.user_id, client_id=row.client_id)
    return won


def revoke_family(family_id: str, *, reason: str, user_id: int | None = None, client_id: str | None = None,
                  only_if_live: bool = False, audit_only_a_change: bool = False,
                  told: frozenset = frozenset()) -> bool:
    """Revoke every refresh token of a family and every access token issued in it.

    The access tokens are read after the refresh tokens are revoked: a rotation that commits in
    between has its new refresh token revoked, and the access token issued with it is listed too.
    The client is told (back-channel logout) when this revocation ends the family: not again by a
    second revocation, at once or after, which found its refresh tokens revoked already. A code's
    family without refresh tokens ends when its access tokens are revoked: a replay of the code
    after that tells nobody again.

    Whether this revocation ended refresh tokens of the family. With `only_if_live` (a person
    ending one grant), a family whose refresh tokens were all revoked already (by a request that
    committed first) is left as it is: nothing recorded, False. With `audit_only_a_change` (a
    client's revocation, which RFC 7009 lets it send again), the event is recorded only if this
    revocation ended a refresh token or listed an access token that was not listed yet. `told`:
    (session, client) pairs told already by this request (logout.family_ended).
    """
    stamp = now()
    ended_here = store.revoke_family_tokens(family_id, stamp)
    if only_if_live and not ended_here:
        db.session.rollback()
        return False
    jtis = store.family_access_token_jtis([family_id], _issued_since_alive(stamp))
    listed_already = all_revoked(jtis)
    if ended_here or (not store.family_has_refresh_tokens(family_id) and not listed_already):
        logout.family_ended(family_id, reason, told=told)
    revoke_jtis(jtis, stamp + ACCESS_TOKEN_LIFETIME_MAX, user_id)
    if ended_here or not audit_only_a_change or (jtis and not listed_already):
        audit.record("token_revoked", user_id=user_id, client_id=client_id,
                     detail={"reason": reason, "family": family_id})
    if reason == "authorization_code_replayed":
        metrics.count_code_replay(client_id)
    elif reason == "refresh_token_reused":
        metrics.count_refresh_token_reuse(client_id)
    db.session.commit()
    return bool(ended_here)


def _issued_since_alive(stamp: int) -> int:
    """The oldest issue time of an access token some instance may still accept at `stamp`: none
    lives longer than ACCESS_TOKEN_LIFETIME_MAX, and is accepted a little past it
    (bearer_cache.accepted_past_expiry). A family's older rotations are left off the deny list (a
    grant refreshed often keeps weeks of them)."""
    return stamp - ACCESS_TOKEN_LIFETIME_MAX - accepted_past_expiry(current_app.config)


def revoke_refresh_token(row: RefreshToken) -> None:
    """RFC 7009: revoking a refresh token revokes its family (and their access tokens); sent
    again, it revokes and records nothing more."""
    revoke_family(row.family_id, reason="revocation_endpoint", user_id=row.user_id, client_id=row.client_id,
                  audit_only_a_change=True)


def revoke_access_token(jti: str, expires_at: int, *, user_id: int | None, client_id: str | None) -> None:
    """RFC 7009 for an access token: put it on the revocation list, committed with its audit event.
    One on the list already (a client's retry, or the same request sent at the same moment, whose
    insert waits for this one's: RFC 7009 answers it 200 too) changes and records nothing."""
    if all_revoked([jti]):
        return
    if not tokens.revoke_access_token(jti, expires_at, user_id):
        db.session.rollback()
        return
    audit.record("token_revoked", user_id=user_id, client_id=client_id,
                 detail={"reason": "revocation_endpoint", "token_type": "access_token"})
    db.session.commit()


def record_standalone_access_token(jti: str, *, user_id: int, client_id: str, expires_in: int,
                                   password_version: int | None) -> None:
    """Record an access token of no family (implicit flow, password grant without a refresh
    token) until it expires, so revoking the app on the grants page can revoke it, with the
    password version it carries (`pwv`), so the page lists it only while the bearer check takes it."""
    stamp = now()
    store.insert_standalone_access_token(jti, user_id=user_id, client_id=client_id, issued_at=stamp,
                                         expires_at=stamp + int(expires_in), password_version=password_version)


def revoke_user_client_grants(user_id: int, client_id: str) -> None:
    """Revoke every refresh token a user granted to a client, every access token issued to the
    client for the user (in those families, by the user's codes, or standalone), and the
    client's unused codes (the caller commits). The access tokens are read after the rows are
    revoked, as in revoke_family."""
    stamp = now()
    logout.client_grants_ended(user_id, client_id)
    store.revoke_user_client_rows(user_id, client_id, stamp)
    families = store.user_client_families(user_id, client_id)
    jtis = store.family_access_token_jtis(families, _issued_since_alive(stamp))
    # those some instance's bearer check may still accept (bearer_cache.accepted_past_expiry)
    jtis |= store.user_client_standalone_jtis(user_id, client_id, stamp - accepted_past_expiry(current_app.config))
    revoke_jtis(jtis, stamp + ACCESS_TOKEN_LIFETIME_MAX, user_id)


def revoke_user_access_tokens(user_id: int, *, reason: str) -> None:
    """Put on the revocation list every access token of a user that some instance may still
    accept, also those no grant entry covers: of a code redeemed without a refresh token, and of
    no family at all (implicit flow, password grant without offline_access). The operator's
    sign-out everywhere (`sessions end USER`); the caller commits."""
    stamp = now()
    jtis = store.family_access_token_jtis(store.user_code_families(user_id), _issued_since_alive(stamp),
                                          unrevoked_only=True)
    jtis |= store.user_standalone_jtis(user_id, stamp - accepted_past_expiry(current_app.config), unrevoked_only=True)
    if jtis:  # audited when it revokes something
        revoke_jtis(jtis, stamp + ACCESS_TOKEN_LIFETIME_MAX, user_id)
        audit.record("token_revoked", user_id=user_id, detail={"reason": reason, "access_tokens_of_no_grant": True})


def end_client_grants(client_id: str, *, reason: str, audit_none: bool = True) -> None:
    """Consume a client's unused codes and revoke every refresh token it holds (the caller
    commits): a client made public by the seed must not redeem with no secret what it was
    issued while it authenticated with one (RFC 6749 section 6). Audited; with `audit_none`
    false, only if there was something to end."""
    if store.revoke_client_rows(client_id, now()) or audit_none:
        audit.record("token_revoked", client_id=client_id, detail={"reason": reason})

"""Telling the clients that a user's session or grant ended (OpenID Connect Back-Channel Logout 1.0).

Which clients: every client with a logout URI that a browser session issued a code or tokens to
(recorded once per session and client at the authorization endpoint, `remember_session_client`;
a client given a logout URI later is told about sessions from then on), and the client
of every refresh-token family that ends. What ends them: a sign-out, a session ended from the
devices page, a password change or reset (every other session and every family), and a grant
ended (revocation, replay, an app revoked on the grants page).

Each client with a `backchannel_logout_uri` gets one queue row, written in the same transaction
as the change it reports: committed together, or neither. The token is signed later, when it is
sent (services/logout_delivery.py), never during the user's request. The row keeps the URI
registered at that moment; a delivery goes only to the URI the client still has registered then.

A token carries `sub` and, when the ended thing belonged to a browser session, that session's
public `sid`. A client that requires `sid` (`backchannel_logout_session_required`) gets nothing
for a grant of no session (the password grant), rather than a token it must refuse.
"""

import secrets
from typing import Iterable, NamedTuple
from urllib.parse import urlencode

from flask import current_app, has_request_context

from .. import clock
from ..current import current_application
from ..extensions import db
from ..config.issuer import issuer
from ..store import logout as store
from .clients import get_client
from .logout_delivery import WAKE_AFTER_COMMIT


class Ended(NamedTuple):
    """Something of a user's that ended at a client: a session there (`session_id`), or all of it."""

    client_id: str
    subject: str | None
    session_id: str | None


def remember_session_client(session_id: str | None, client) -> None:
    """Record that a browser session issued a code or tokens to this client (once; committed).

    Only for a client with a logout URI: the others are never told, and their authorizations
    cost no write. The record is read first, and written only if it is not there (the same app,
    signed in again and again in one session, costs a read, not a write). The read is asked of
    the database each time, never of a worker's memory: a database restored from a backup has
    lost the records made since, and a session that signs in to the app again must be recorded
    again, or its sign-out would not tell the app. `clients remove` deletes the records, so a
    client registered again under the id is recorded afresh.
    """
    if not session_id or not (client.backchannel_logout_uri or client.frontchannel_logout_uri):
        return
    if store.session_client_recorded(session_id, client.client_id):
        return
    store.remember_session_client(session_id, client.client_id, clock.now())


def _issuer_now() -> str | None:
    if current_app.config.get("ISSUER") or has_request_context():
        return issuer()
    return None


def queue(ended: Iterable[Ended], reason: str) -> int:
    """Queue a logout token for each client that registered a back-channel logout URI, in the
    caller's transaction (the caller commits); the number queued."""
    stamp, iss, rows, seen = clock.now(), _issuer_now(), [], set()
    for item in ended:
        if item in seen:
            continue
        seen.add(item)
        client = get_client(item.client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        if client.backchannel_logout_session_required and not item.session_id:
            continue
        rows.append({"jti": secrets.token_urlsafe(24), "client_id": client.client_id, "uri": client.backchannel_logout_uri,
                     "subject": item.subject, "session_id": item.session_id, "reason": reason, "issuer": iss,
                     "created_at": stamp, "attempts": 0, "next_attempt_at": stamp})
    if rows:
        store.enqueue(rows)
        db.session.info[WAKE_AFTER_COMMIT] = current_application()
    return len(rows)


class EndedSession(NamedTuple):
    """A browser session that ended, and the clients it had issued to (for front-channel logout)."""

    public_sid: str
    client_ids: list[str]


def session_ended(digest: str, reason: str = "signed_out") -> EndedSession | None:
    """Queue tokens for the clients of the live session whose cookie sid has this digest
    (store.browser_sessions.sid_digest); call before it is revoked, in the same transaction. The
    session and its clients; None if it was not live."""
    found = store.session_by_sid(digest)
    if found is None:
        return None
    public_sid, subject = found
    client_ids = [client_id for _, client_id in store.session_clients([public_sid])]
    queue([Ended(client_id, subject, public_sid) for client_id in client_ids], reason)
    return EndedSession(public_sid, client_ids)


def live_session(digest: str) -> tuple[str, str] | None:
    """(public sid, user subject) of the live session whose sid column holds `digest`, or None."""
    return store.session_by_sid(digest)


# How recently another request must have ended a session for a sign-out to frame its clients'
# front-channel URIs all the same (session_ended_meanwhile): the same form sent twice at once.
ENDED_MEANWHILE_SECONDS = 10


def session_ended_meanwhile(digest: str) -> EndedSession | None:
    """The session with this cookie sid digest and its clients, if another request ended it in
    the last ENDED_MEANWHILE_SECONDS (the same sign-out sent twice at once): what the front
    channel tells, which only the browser can; the request that ended it queued the back-channel
    tokens. None otherwise (live, idle, ended earlier, unknown)."""
    found = store.session_by_sid(digest, ended_since=clock.now() - ENDED_MEANWHILE_SECONDS)
    if found is None:
        return None
    public_sid, _ = found
    return EndedSession(public_sid, [client_id for _, client_id in store.session_clients([public_sid])])


def frontchannel_logout_uris(ended: EndedSession | None) -> list[str]:
    """The URIs the signed-out page loads in iframes (Front-Channel Logout 1.0 section 2): each
    client's registered frontchannel_logout_uri, with `iss` and `sid` when the client asked for them."""
    if ended is None:
        return []
    uris = []
    for client_id in ended.client_ids:
        client = get_client(client_id)
        if client is None or not client.enabled or not client.frontchannel_logout_uri:
            continue
        uri = client.frontchannel_logout_uri
        if client.frontchannel_logout_session_required:
            # added to the registered query, if any: an empty one (`/fc?`) gets no second `?`
            base, _, query = uri.partition("?")
            uri = base + "?" + "&".join(filter(None, [query, urlencode({"iss": issuer(), "sid": ended.public_sid})]))
        uris.append(uri)
    return uris


def live_session_clients(user_id: int, subject: str, *, keep_sid: str | None = None) -> list[Ended]:
    """Every client of the user's live sessions (but `keep_sid`'s), for user_logged_out: read
    before the sessions are revoked, in the same transaction."""
    return [Ended(client_id, subject, session_id)
            for session_id, client_id in store.session_clients(store.user_live_sessions(user_id, keep_sid=keep_sid))]


def user_logged_out(user_id: int, subject: str, *, keep_sid: str | None = None, reason: str,
                    families: Iterable[tuple[str, str | None]] | None = None,
                    sessions: list[Ended] | None = None) -> None:
    """Queue tokens for every client of the user's live sessions (but `keep_sid`'s) and of their
    live refresh-token families (the user's `subject` is the tokens' sub), in the same transaction
    as their revocation. `sessions`, live_session_clients' list, read before the sessions were
    revoked, or else read here: then call before they are revoked. `families`, the (client_id,
    session_id) pairs their revocation returned (issued_grants.revoke_user_refresh_tokens), or
    else read here, before they are revoked."""
    ended = list(sessions) if sessions is not None else live_session_clients(user_id, subject, keep_sid=keep_sid)
    if families is None:
        families = store.user_live_families(user_id, clock.now())
    ended += [Ended(client_id, subject, session_id) for client_id, session_id in families]
    queue(ended, reason)


def family_ended(family_id: str, reason: str, *, told: frozenset = frozenset()) -> None:
    """Queue a token for the client of a grant family that ends; in the caller's transaction.
    Not when `told` (pairs of session public id and client id) holds its session and client: that
    client was sent a token for the session as it ended, in the same request (signed out everywhere)."""
    holder = store.family_holder(family_id)
    if holder is not None:
        client_id, user_id, session_id = holder
        if session_id and (session_id, client_id) in told:
            return
        queue([Ended(client_id, store.user_subject(user_id), session_id)], reason)


def client_grants_ended(user_id: int, client_id: str, reason: str = "grant_revoked") -> None:
    """Queue a token telling a client that every grant of the user there ended (sub only); a
    client that requires `sid` gets one per session those grants belong to instead (call before
    they are revoked, in the same transaction)."""
    subject, client = store.user_subject(user_id), get_client(client_id)
    if client is not None and client.backchannel_logout_session_required:
        queue([Ended(client_id, subject, session_id)
               for session_id in store.user_client_sessions(user_id, client_id, clock.now())], reason)
        return
    queue([Ended(client_id, subject, None)], reason)

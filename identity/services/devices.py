"""Where a user is signed in: their browser sessions and app grants, listed and ended in one place.

An entry is a live browser session (a sign-in on this server's pages) or an app grant (a live
refresh-token family: what lets an app stay signed in). The page, the local API and the CLI all
come here. Ending goes through the existing end points only, so whatever hangs on them (the
audit log, logout notifications to the apps) fires the same way for every front door:
services/browser_sessions.end_session for a browser session (its codes die with it: a code only redeems
while its session lives) and services/issued_grants.revoke_family for a grant (its refresh tokens and
every access token issued in it).

An entry's id is public and opaque: the kind, then the session's public id or the family's
id, never a row id that would tell how many sign-ins the server has seen.
"""

from typing import NamedTuple

from .. import clock
from ..errors import NotFound
from ..extensions import db
from ..models import User
from ..store import accounts as user_rows
from ..store import devices as store
from . import accounts, audit, bearer_cache, issued_grants, browser_sessions
from .user_agents import summarise

BROWSER, APP = "browser", "app"
# A listing shows at most this many entries of each kind, the most recently used (and the current
# one): a user can start grants at the token endpoint's rate, and each lives for weeks.
MAX_LISTED = 100
BROWSER_NAME = "Browser"  # a session started on the server's own pages, or for an unknown client


class Entry(NamedTuple):
    id: str
    kind: str  # BROWSER or APP
    client_id: str | None
    client_name: str
    created_at: int
    last_used_at: int
    device: str  # the user agent, summarised
    ip_address: str | None  # truncated
    current: bool


def entry_id(kind: str, key: str) -> str:
    return f"{kind}_{key}"


def parse_entry_id(value: str) -> tuple[str, str] | None:
    """(kind, key) of a well-formed entry id; None for anything else."""
    kind, sep, key = value.partition("_")
    # a NUL is in no id this server makes, and PostgreSQL refuses it in a text parameter (a 503)
    if not sep or kind not in (BROWSER, APP) or not key or len(key) > 64 or "\x00" in key:
        return None
    return kind, key


def current_app_entry(user_id: int, client_id: str | None, jti: str) -> str | None:
    """The entry id of the grant an access token was issued in (its caller's own); None if none."""
    family = store.access_token_family(user_id, client_id, jti)
    return entry_id(APP, family) if family else None


def current_browser_entry(public_sid: str) -> str:
    """The entry id of a browser session, by its public id (the cookie's session on the page)."""
    return entry_id(BROWSER, public_sid)


def list_entries(user_id: int, current: str | None = None, *, limit: int | None = MAX_LISTED,
                 only: str | None = None) -> list[Entry]:
    """The user's live entries, the current one (`current`, an entry id) first, then the most
    recently used: at most `limit` of each kind besides the current one (None: all of them), or
    only the entry `only` (an entry id) if it is live."""
    if only is not None:
        parsed = parse_entry_id(only)
        if parsed is None:
            return []
        kind, key = parsed
        sessions = {"public_sid": key} if kind == BROWSER else None
        grants = {"family_id": key} if kind == APP else None
        return _entries(user_id, current, None, sessions, grants)
    entries = _entries(user_id, current, limit, {}, {})
    if current is not None and not any(e.current for e in entries):  # older than those listed
        entries = list_entries(user_id, current, only=current) + entries
    return entries


def _entries(user_id: int, current: str | None, limit: int | None, sessions: dict | None,
             grants: dict | None) -> list[Entry]:
    stamp = clock.now()
    # within their lifetime: the query's bounds leave the others out, before its limit
    rows = (store.unrevoked_sessions(user_id, limit=limit, bounds=browser_sessions.lifetime_bounds(stamp), **sessions)
            if sessions is not None else [])
    # usable as the refresh grant judges: not past the family's absolute lifetime either
    tokens = [t for t in store.live_refresh_tokens(user_id, stamp, limit=limit, **grants)
              if issued_grants.refresh_token_usable(t.expires_at, t.auth_time, stamp, t.issued_at)] if grants is not None else []
    names = store.client_names([r.client_id for r in rows] + [t.client_id for t in tokens])
    entries = []
    for r in rows:
        # the client the sign-in was for, unless it was removed since (and its id perhaps
        # registered again, for another app: the session never signed in to that one)
        known = r.client_id in names and names[r.client_id][1] <= r.created_at
        eid = entry_id(BROWSER, r.public_sid)
        entries.append(Entry(eid, BROWSER, r.client_id if known else None,
                             (names[r.client_id][0] or r.client_id) if known else BROWSER_NAME,
                             r.created_at, r.last_seen_at, summarise(r.user_agent), r.ip_address, eid == current))
    seen = set()
    for t in sorted(tokens, key=lambda t: t.issued_at, reverse=True):
        if t.family_id in seen:  # two usable tokens of one family: not made by this server, but show it once
            continue
        seen.add(t.family_id)
        eid = entry_id(APP, t.family_id)
        entries.append(Entry(eid, APP, t.client_id, names.get(t.client_id, ("",))[0] or t.client_id,
                             min(t.started_at, t.issued_at), t.issued_at,
                             summarise(t.user_agent), t.ip_address, eid == current))
    entries.sort(key=lambda e: (not e.current, -e.last_used_at, e.id))
    return entries


def list_entries_audited(user_id: int, *, by: str) -> list[Entry]:
    """The user's live entries, read by someone else (an operator): the reading is audited."""
    entries = list_entries(user_id, limit=None)
    audit.record("sessions_listed", user_id=user_id, detail={"by": by, "count": len(entries)})
    db.session.commit()
    return entries


def end_entry(user_id: int, value: str, *, by: str = "user") -> Entry:
    """End one of the user's live entries and return it; NotFound for an id that is not one (the
    same answer for another user's, an ended one, and nonsense). `by` is who asked, for the audit."""
    found = next(iter(list_entries(user_id, only=value)), None)
    if found is None or not _end(user_id, found, by):  # not live, or ended meanwhile by another request
        db.session.rollback()  # the list's read
        raise NotFound("no such session")
    return found


def record_own_end(user_id: int, current: str, *, by: str = "user") -> None:
    """Record, in the session's transaction, the end of this browser's own session (entry
    `current`), which the page then ends as "Sign out" does (plumbing.login_session.sign_out):
    its end commits the event, or rolls it back if the session had ended meanwhile."""
    found = next(iter(list_entries(user_id, current, only=current)), None)
    if found is not None:
        audit.record("session_ended", user_id=user_id, client_id=found.client_id, detail={"reason": f"ended_by_{by}"})


def end_all_but(user_id: int, current: str | None, *, by: str = "user") -> list[Entry]:
    """End every live entry of the user but `current` (an entry id, or None for all); return
    those this call ended (not those another request ended meanwhile). Browser sessions first:
    a client told of a session as it ends is not told again by the end of a grant of that session
    (one logout token a session and client, as a password change sends).

    The entries are listed, and ended, twice: what began while those of the first listing were
    being ended (the grant of a code that one of their sessions minted, redeemed before that
    session ended) is in the second. What begins after it began once their sessions had ended,
    whose codes no longer redeem: a sign-in or grant of its own, as one a moment later would be.
    A redemption under way as its session ends holds the session's row: the end waits for its
    grant, which the second listing then finds (store/issued_grants.py, _SESSION_LIVE_LOCKED).
    Then the grants no listing shows end too (_end_unlisted_grants): "everywhere else" is everywhere."""
    told: set[tuple[str, str]] = set()
    ended = _end_listed_but(user_id, current, by, told)
    ended += _end_listed_but(user_id, current, by, told)
    _end_unlisted_grants(user_id, current, by, told)
    return ended


def _end_listed_but(user_id: int, current: str | None, by: str, told: set) -> list[Entry]:
    """End the user's live entries as listed now, but `current`; those this call ended."""
    entries = [e for e in list_entries(user_id, limit=None) if e.id != current]
    ended = {e.id for e in sorted(entries, key=lambda e: e.kind != BROWSER) if _end(user_id, e, by, told)}
    return [e for e in entries if e.id in ended]


def _end_unlisted_grants(user_id: int, current: str | None, by: str, told: set) -> None:
    """End the user's families that still have an unused, unrevoked token but no entry
    (refresh_families.UNREVOKED, not LIVE), but `current`'s: those the refresh grant refuses by their
    password version. A previous release left such families, and so does a code's redemption whose
    revocation after a password change committed meanwhile never ran (a worker stopped between the
    two: issued_grants._unless_outdated_by_a_password_change). Never ended, their clients were never
    told and may still hold the sign-in: they are revoked and told as a listed grant is, and audited,
    but not returned: the person was never shown them, so the count they are told is of what they saw."""
    for family_id, client_id in store.unrevoked_families(user_id, clock.now()):
        if entry_id(APP, family_id) != current:
            _end_grant(user_id, family_id, client_id, by, told)


def end_everything(user_id: int, *, by: str) -> list[Entry]:
    """End every live entry of the user, and revoke the access tokens of theirs that no entry
    holds (of no grant: the implicit flow, the password grant without offline_access, a code
    redeemed without a refresh token): signed out everywhere, as the operator asks. Returns the
    entries this call ended.

    It also moves the user's password version on, as `users disable` does: access tokens no row
    names are refused too, those issued since the backup of a restored database among them (the
    restore took their rows, and so their revocation's reach); and it returns only once no worker
    still accepts them from memory. What began while the entries were being ended (a grant, a
    sign-in) ends with them (_end_what_began_meanwhile)."""
    ended = end_all_but(user_id, None, by=by)
    # first: it locks the user's row (a password change or a disable waits), and a sign-in or
    # password grant that checks the user after this commit stores nothing
    user_rows.move_password_version_on(user_id)
    _end_what_began_meanwhile(user_id, reason=f"ended_by_{by}")
    issued_grants.revoke_user_access_tokens(user_id, reason=f"ended_by_{by}")
    db.session.commit()
    bearer_cache.wait_out_cached_answers(user_id)
    return ended


def _end_what_began_meanwhile(user_id: int, *, reason: str) -> None:
    """In the caller's transaction, end what no listed entry held because it began while they were
    being ended (a code of a session not yet ended redeemed into a grant, a sign-in stored): the
    user's every code, refresh token and session, as a password change ends them; their clients
    are told. What the entries ended is ended already, and is not told again."""
    user = db.session.get(User, user_id)
    if user is not None:
        accounts.revoke_grants_and_sessions(user, None, reason=reason)


def _end_grant(user_id: int, family_id: str, client_id: str | None, by: str, told: set | None) -> bool:
    """End one grant family a person (or operator) asked to end, if still live: revoked, audited
    as `ended_by_<by>`, its client told unless `told` holds its session and client."""
    return issued_grants.revoke_family(family_id, reason=f"ended_by_{by}", user_id=user_id, client_id=client_id,
                                       only_if_live=True, told=frozenset(told or ()))


def _end(user_id: int, entry: Entry, by: str, told: set | None = None) -> bool:
    """End one listed entry; False if another request ended it since it was listed (nothing
    is recorded then). `told` collects the (session, client) pairs a session's end told, and
    spares the grants of those the same token (logout.family_ended)."""
    kind, key = parse_entry_id(entry.id)
    if kind == APP:
        return _end_grant(user_id, key, entry.client_id, by, told)
    digest = store.session_sid_digest(user_id, key)
    if digest is None:  # ended meanwhile
        return False
    audit.record("session_ended", user_id=user_id, client_id=entry.client_id, detail={"reason": f"ended_by_{by}"})
    # commits the event with the end; rolls both back if another request ended it first
    ended = browser_sessions.end_stored_session(digest)
    if ended is not None and told is not None:
        told.update((ended.public_sid, client_id) for client_id in ended.client_ids)
    return ended is not None

"""Per-request facts that Authlib's hooks do not pass along: who signed in when, which session."""

from dataclasses import dataclass

from ..current import context_globals


@dataclass
class GrantContext:
    auth_time: int | None = None
    sid: str | None = None  # the session's public id
    amr: str | None = None  # how the user signed in (RFC 8176 names, space-separated): amr and acr
    family_id: str | None = None
    issued_jti: str | None = None
    issued_expires_at: int | None = None  # the exp of that access token
    # (grant type, client id) of that access token, counted once the write that keeps it commits
    issued_as: tuple[str, str] | None = None
    rotating: object | None = None  # the refresh token row this request rotates, consumed in save_token
    # the password version the password grant checked: its refresh token is stored only while it holds
    password_version: int | None = None


def grant_context() -> GrantContext:
    store = context_globals()
    context = store.get("grant_context")
    if context is None:
        context = store.grant_context = GrantContext()
    return context


def resume_grant(row) -> None:
    """Carry a stored code's or refresh token's sign-in time, methods, session and family into new tokens."""
    context = grant_context()
    context.auth_time, context.sid, context.family_id = row.auth_time, row.session_id, row.family_id
    context.amr = row.amr

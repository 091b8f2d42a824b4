"""Per-request facts that Authlib's hooks do not pass along: who signed in when, which session."""

from dataclasses import dataclass

from flask import g


@dataclass
class GrantContext:
    auth_time: int | None = None
    sid: str | None = None  # the session's public id
    family_id: str | None = None
    issued_jti: str | None = None
    rotating: object | None = None  # the refresh token row this request rotates, consumed in save_token


def grant_context() -> GrantContext:
    if "grant_context" not in g:
        g.grant_context = GrantContext()
    return g.grant_context


def resume_grant(row) -> None:
    """Carry a stored code's or refresh token's sign-in time, session and family into new tokens."""
    context = grant_context()
    context.auth_time, context.sid, context.family_id = row.auth_time, row.session_id, row.family_id

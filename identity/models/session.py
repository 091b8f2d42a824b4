from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS, GROWING_ID


class UserSession(db.Model):
    """A browser sign-in.

    `sid` is the SHA-256 (hex) of the cookie's identifier, a secret: whoever holds the identifier
    (with the secret key's signature) holds the session, so only its digest is kept
    (store/browser_sessions.sid_digest). `public_sid` names the session to clients: the ID token's and
    access token's `sid`, and the session a code or refresh token was issued in. Neither can be
    derived from the other.
    """

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    public_sid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[int] = mapped_column(EPOCH_SECONDS)
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)
    # the last request that used the session, written at most once a minute (sessions.TOUCH_SECONDS)
    last_seen_at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)
    revoked_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS, index=True)
    # what the sessions page shows: the client the sign-in was for, and the browser's user agent
    # (bounded) and address (truncated: services/user_agents.py) at sign-in
    client_id: Mapped[str | None] = mapped_column(String(200))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    # how the person signed in: RFC 8176 method names, space-separated ("pwd", "pwd otp mfa")
    amr: Mapped[str | None] = mapped_column(String(64))
    # created_at, last_seen_at and revoked_at are indexed for the purge, which looks for ended sessions

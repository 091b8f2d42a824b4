from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS, GROWING_ID


class AccountToken(db.Model):
    """A one-time link sent by mail (a password reset, an address verification), or a passkey
    answer's challenge, stored as used by the answer that signed in with it.

    Only the SHA-256 of the token is kept: the token is 256 random bits, so a fast hash is
    enough, and a database leak reveals no usable link. `used_at` is set once, by the one
    request that consumes it, or when a newer token of the same purpose (or, for resets, a
    password change) supersedes it.
    """

    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))  # "password_reset", "verify_email", ...
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(320))  # the address the link was sent to
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    expires_at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)  # indexed for the purge
    used_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)

    # the newer-token check and the hourly mail count look tokens up by user and purpose
    __table_args__ = (Index("ix_account_tokens_user_purpose", "user_id", "purpose", "created_at"),)

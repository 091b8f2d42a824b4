from sqlalchemy import Boolean, Float, Integer, String, false, true
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS


class User(db.Model):
    """A person who signs in. `password_version` changes on every password change and every
    disable: what was issued under an older one (access tokens' `pwv`) is refused."""

    __tablename__ = "users"
    # SQLite's AUTOINCREMENT: a removed user's id is never given to another (the audit log keeps
    # naming users by it); without it, the next row took the largest id plus one
    # (migration f6c2a8e4b0d7; not a `sqlite_autoincrement` table option here, which would load
    # SQLAlchemy's SQLite dialect into every PostgreSQL worker: 0.66 MiB)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True)  # the `sub` claim; random, not the row id
    username: Mapped[str] = mapped_column(String(150))
    username_normalized: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    email_normalized: Mapped[str | None] = mapped_column(String(320), unique=True)
    # whether the owner of `email` has followed a verification link to it (the `email_verified` claim)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # an address the user asked to change to; it replaces `email` once its link is followed
    pending_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    password_version: Mapped[int] = mapped_column(Integer, default=1)
    password_changed_at: Mapped[int] = mapped_column(EPOCH_SECONDS)  # epoch seconds
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[int] = mapped_column(EPOCH_SECONDS, default=0)  # epoch seconds; 0 = not locked
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    # a disabled user cannot sign in and their tokens are refused (`flask users disable`)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    disabled_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS, nullable=True)  # epoch seconds; None while enabled
    # epoch seconds until which some worker may reuse a bearer check of this user's tokens
    # (services/bearer_cache.py); changes to the user wait that out before they answer
    bearer_cached_until: Mapped[float | None] = mapped_column(Float, nullable=True)

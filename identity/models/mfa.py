from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS


class TotpFactor(db.Model):
    """A user's authenticator app (TOTP, RFC 6238): one per user.

    The secret is encrypted like the signing keys (services/key_encryption.py). A row whose
    `confirmed_at` is None is an enrolment not yet confirmed by a code: it is no factor.
    `last_step` is the newest time step accepted, so a code is accepted once.
    """

    __tablename__ = "totp_factors"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    secret_encrypted: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    confirmed_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    last_step: Mapped[int] = mapped_column(Integer, default=0)


class RecoveryCode(db.Model):
    """A single-use recovery code, stored as SHA-256 under its set's random salt, `salt.digest`
    (services/mfa.py: recovery_code_hash; a set stored before salts is bare SHA-256 in hex). The
    codes are random, 50 bits each."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_hash", "user_id", "code_hash", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    used_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)

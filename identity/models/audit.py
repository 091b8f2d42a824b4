from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS, GROWING_ID


class AuditEvent(db.Model):
    """A security event: sign-in, lockout, password change, consent, revocation, key rotation."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True)
    at: Mapped[int] = mapped_column(EPOCH_SECONDS, index=True)
    event: Mapped[str] = mapped_column(String(50), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    client_id: Mapped[str | None] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)

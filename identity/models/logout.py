from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS, GROWING_ID


class SessionClient(db.Model):
    """A client that a browser session issued a code or tokens to: the clients to tell when the
    session ends (Back-Channel and Front-Channel Logout). Removed with its session by the purge."""

    __tablename__ = "session_clients"
    __table_args__ = (UniqueConstraint("session_id", "client_id", name="uq_session_clients_session_client"),)

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64))  # the session's public_sid
    client_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)


class LogoutDelivery(db.Model):
    """A logout token to send to a client's back-channel logout URI, until delivered or given up.

    The token is signed when it is sent (with the key current then); the row keeps what it says
    (`jti`, the same on every attempt, `subject`, `session_id`) and the URI registered when it was
    queued, which must still be the client's registered URI at send time. A worker claims a row
    by setting `leased_until` and `lease_owner` in one conditional UPDATE (store/logout.py).
    """

    __tablename__ = "logout_deliveries"
    __table_args__ = (Index("ix_logout_deliveries_due", "delivered_at", "gave_up_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(200))
    uri: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(64))  # the session's public_sid: the token's sid
    reason: Mapped[str] = mapped_column(String(40))
    issuer: Mapped[str | None] = mapped_column(Text)  # the token's iss, as the request that queued it saw it
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    leased_until: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    lease_owner: Mapped[str | None] = mapped_column(String(32))
    delivered_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    gave_up_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)
    last_error: Mapped[str | None] = mapped_column(String(200))

from sqlalchemy import BigInteger, Boolean, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS


class Passkey(db.Model):
    """A WebAuthn credential a user registered: a passkey or a security key.

    `credential_id` is the authenticator's id for the key (base64url, unique across users: the
    browser names a credential by it, and one credential belongs to one account). `sign_count`
    is the authenticator's use counter as last seen: a count that does not grow, from an
    authenticator that keeps one, means a copy of the key is in use (services/passkeys.py).
    `backup_eligible` (the BE flag) tells a key that may be synced to other devices (a software
    key, amr `swk`) from one bound to its authenticator (amr `hwk`).
    """

    __tablename__ = "passkeys"
    # SQLite's AUTOINCREMENT: a removed passkey's id is never given to another (the audit log
    # names passkeys by it, and the remove form posts it), as PostgreSQL's sequence never does
    # (migration 5743972ee32a; not a `sqlite_autoincrement` table option here, which would load
    # SQLAlchemy's SQLite dialect into every PostgreSQL worker: 0.66 MiB)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # up to 1023 bytes, base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key, as registered
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)  # WebAuthn: unsigned 32 bits
    transports: Mapped[str] = mapped_column(String(200), default="")  # space-separated hints for the browser
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)
    last_used_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)

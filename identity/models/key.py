from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class SigningKey(db.Model):
    """A signing key pair, shared by every worker and instance through the database."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(10), index=True)
    private_jwk: Mapped[str] = mapped_column(Text)  # JSON
    created_at: Mapped[int] = mapped_column(Integer)
    retired_at: Mapped[int | None] = mapped_column(Integer)  # no longer signs; still published a while

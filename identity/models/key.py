from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS


class SigningKey(db.Model):
    """A signing key pair, shared by every worker and instance through the database.

    Its life (services/keys.py): published from `created_at`, signs from `activates_at` until
    its successor activates (`retired_at`), stays published for the retention time after that,
    or leaves at once when an emergency rotation revokes it (`revoked_at`). `generation` counts
    the keys of one algorithm; unique with `alg`, it is what lets two instances that decide to
    rotate at the same moment make one key, not two (the second insert fails).
    """

    __tablename__ = "signing_keys"
    __table_args__ = (UniqueConstraint("alg", "generation", name="uq_signing_keys_alg_generation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(10), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    private_jwk: Mapped[str] = mapped_column(Text)  # Fernet token of the private JWK (services/key_encryption.py)
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)  # published from
    activates_at: Mapped[int] = mapped_column(EPOCH_SECONDS)  # signs from
    retired_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)  # no longer signs; still published a while
    revoked_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS)  # emergency rotation: unpublished at once

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class ApiScope(db.Model):
    """A scope that grants access to an API, such as IdentityServerApi."""

    __tablename__ = "api_scopes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))


class IdentityResource(db.Model):
    """A scope that releases claims about the user (openid, profile, email, offline_access)."""

    __tablename__ = "identity_resources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)

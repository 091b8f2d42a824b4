from sqlalchemy import JSON, Boolean, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .wide_integers import EPOCH_SECONDS


class Client(db.Model):
    """An application registered with the provider (IdentityServer4's Client)."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200), unique=True)
    client_name: Mapped[str] = mapped_column(String(200))
    secret_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: public client
    allowed_grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowed_cors_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    allowed_scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    require_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    require_pkce: Mapped[bool] = mapped_column(Boolean, default=True)
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)  # its users sign in with a second factor
    # sign-in for this client completes only once the user's email address is verified
    require_verified_email: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    allow_offline_access: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_access_tokens_via_browser: Mapped[bool] = mapped_column(Boolean, default=False)
    access_token_lifetime: Mapped[int] = mapped_column(Integer, default=3600)
    # OpenID Connect Back-Channel and Front-Channel Logout 1.0 (services/logout.py)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    backchannel_logout_session_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    frontchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    frontchannel_logout_session_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # `flask clients disable` / `enable`
    disabled_at: Mapped[int | None] = mapped_column(EPOCH_SECONDS, nullable=True)  # epoch seconds; None while enabled
    created_at: Mapped[int] = mapped_column(EPOCH_SECONDS)

    @property
    def is_public(self) -> bool:
        return not self.secret_hashes

"""Tables only: typed columns and tiny behaviour; services own the transactions."""

from .account_token import AccountToken
from .audit import AuditEvent
from .client import Client
from .consent import Consent
from .grant import AuthorizationCode, RefreshToken, RevokedAccessToken, StandaloneAccessToken
from .key import SigningKey
from .resource import ApiScope, IdentityResource
from .session import UserSession
from .user import User

__all__ = [
    "AccountToken",
    "ApiScope",
    "AuditEvent",
    "AuthorizationCode",
    "Client",
    "Consent",
    "IdentityResource",
    "RefreshToken",
    "RevokedAccessToken",
    "SigningKey",
    "StandaloneAccessToken",
    "User",
    "UserSession",
]

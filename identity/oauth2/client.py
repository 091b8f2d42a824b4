"""The Client row as Authlib expects to see it (ClientMixin)."""

from urllib.parse import urlsplit, urlunsplit

from ..constants import OFFLINE_ACCESS, RESPONSE_TYPES_BY_GRANT
from ..models import Client
from ..services.client_secrets import verify_client_secret

LOOPBACK_HOSTS = {"127.0.0.1", "[::1]"}


def _without_port(uri: str) -> tuple[str, bool]:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc_host = f"[{host}]" if ":" in host else host
    if parts.scheme == "http" and netloc_host in LOOPBACK_HOSTS:
        return urlunsplit((parts.scheme, netloc_host, parts.path, parts.query, parts.fragment)), True
    return uri, False


def redirect_uri_matches(registered: list[str], requested: str) -> bool:
    """Exact string match; for http loopback IP literals any port matches (RFC 8252 section 7.3)."""
    if requested in registered:
        return True
    try:
        stripped, loopback = _without_port(requested)
    except ValueError:
        return False
    return loopback and any(_without_port(r) == (stripped, True) for r in registered)


class OAuthClient:
    """Adapter: the checks Authlib asks of a client, answered from our Client row."""

    def __init__(self, row: Client):
        self.row = row
        self.client_id = row.client_id

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self):
        return None  # a redirect_uri is required on every request; never guess one

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.row.allowed_scopes)
        if self.row.allow_offline_access:
            allowed.add(OFFLINE_ACCESS)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(self.row.redirect_uris, redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        return bool(self.row.secret_hashes) and verify_client_secret(self.row.secret_hashes, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        normalized = " ".join(sorted((response_type or "").split(), key=["code", "id_token", "token"].index)) \
            if set((response_type or "").split()) <= {"code", "id_token", "token"} else response_type
        if "token" in (normalized or "").split() and not self.row.allow_access_tokens_via_browser:
            return False
        return any(normalized in RESPONSE_TYPES_BY_GRANT.get(g, ()) for g in self.row.allowed_grant_types)

    def check_grant_type(self, grant_type: str) -> bool:
        grants = set(self.row.allowed_grant_types)
        if grant_type == "authorization_code":
            return bool(grants & {"authorization_code", "hybrid"})
        if grant_type == "refresh_token":
            return self.row.allow_offline_access
        if grant_type == "client_credentials":
            return "client_credentials" in grants and not self.row.is_public
        return grant_type in grants

    @property
    def is_public(self) -> bool:
        return self.row.is_public

    @property
    def requires_pkce(self) -> bool:
        return self.row.is_public or self.row.require_pkce

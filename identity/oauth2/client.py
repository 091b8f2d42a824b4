"""The Client row as Authlib expects to see it (ClientMixin)."""

import re
from urllib.parse import urlsplit

from ..constants import OFFLINE_ACCESS, RESPONSE_TYPES_BY_GRANT
from ..current import current_application
from ..models import Client
from ..services.client_secrets import verify_client_secret
from ..services.input_schemas import outbound_http_allowed, plain_http_off_loopback

#: http, a loopback IP literal, an optional port of digits, then a path or query (no userinfo, no
#: backslash, no fragment): the only URIs whose port may differ from the registered one
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?([/?][^#\\]*)?", re.ASCII)


def _loopback_parts(uri: str):
    """(host, path and query) of an http loopback URI with a valid port or none; None for anything else."""
    match = _LOOPBACK.fullmatch(uri)
    if match is None:
        return None
    port = match.group(2)
    if port is not None and (port.startswith("0") or not 0 < int(port) <= 65535):
        return None
    return match.group(1), match.group(3) or ""


def _has_userinfo(uri: str) -> bool:
    try:
        return "@" in urlsplit(uri).netloc
    except ValueError:
        return True


def redirect_uri_matches(registered: list[str], requested: str) -> bool:
    """Exact string match, but any port for http loopback IP literals (RFC 8252 section 7.3);
    a URI with userinfo never matches (the any-port rule is for the port alone). Outside
    development a plain http one off loopback never does either (RFC 9700 section 2.6), though
    registered before that rule: no authorization response travels unencrypted."""
    if not isinstance(requested, str) or _has_userinfo(requested):
        return False
    if plain_http_off_loopback(requested) and not outbound_http_allowed():
        return False
    if requested in registered:
        return True
    parts = _loopback_parts(requested)
    return parts is not None and any(_loopback_parts(r) == parts for r in registered)


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
        allowed = self.allowed_scope_names
        return " ".join(s for s in scope.split() if s in allowed)

    @property
    def allowed_scope_names(self) -> set[str]:
        """The scopes this client may be granted now: its allowed_scopes, and offline_access exactly
        when it is offered refresh tokens (offers_refresh_tokens), whether or not allowed_scopes
        names it: without a refresh token to come, the scope would be granted for nothing."""
        allowed = set(self.row.allowed_scopes) - {OFFLINE_ACCESS}
        if self.offers_refresh_tokens:
            allowed.add(OFFLINE_ACCESS)
        return allowed

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(self.row.redirect_uris, redirect_uri)

    def may_answer_another_app(self, redirect_uri: str, response_type: str | None = "code") -> bool:
        """Whether an answer sent to this redirect URI may reach another app than this client, which
        could then use it: a URI of a private-use scheme, which any app on the device may claim
        (RFC 8252 section 7.1), or a loopback URI matched only by the any-port rule, where any app
        may listen (section 7.3); for a public client (no secret proves who redeems a code), or an
        answer that carries more than a code (an access or ID token, usable as it arrives). Such a
        request is never answered on consent remembered earlier (section 8.6)."""
        if not self.row.is_public and (response_type or "code").split() == ["code"]:
            return False
        if urlsplit(redirect_uri).scheme.lower() not in ("http", "https"):
            return True
        return redirect_uri not in self.row.redirect_uris and _loopback_parts(redirect_uri) is not None

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
            return self.offers_refresh_tokens
        if grant_type == "client_credentials":
            return "client_credentials" in grants and not self.row.is_public
        return grant_type in grants

    @property
    def offers_refresh_tokens(self) -> bool:
        """allow_offline_access, while the server has the refresh_token grant (GRANT_TYPES_ENABLED):
        only then is offline_access granted and a refresh token issued."""
        return self.row.allow_offline_access and "refresh_token" in current_application().config["GRANT_TYPES_ENABLED"]

    @property
    def is_public(self) -> bool:
        return self.row.is_public

    @property
    def requires_pkce(self) -> bool:
        return self.row.is_public or self.row.require_pkce

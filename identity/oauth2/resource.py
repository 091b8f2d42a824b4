"""Bearer access tokens for the server's own resources (/localapi, /connect/userinfo).

`require_oauth("scope")` checks a JWT access token locally, with our own keys: algorithm
allow-list, `typ`, `iss`, time, scope, `aud` (the resource the scope names), and that the
token is neither revoked nor older than its user's last password change. Failures follow RFC 6750 and are rendered for the path:
the registered renderer (problem+json under /localapi), OAuth error JSON elsewhere.

    @bp.get("/account")
    @require_oauth(LOCAL_API_SCOPE, user_required=True)
    def account():
        user = current_token.user
"""

from authlib.integrations.flask_oauth2 import ResourceProtector as _ResourceProtector
from authlib.integrations.flask_oauth2 import current_token
from authlib.integrations.flask_oauth2.signals import token_authenticated
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import MissingAuthorizationError
from authlib.oauth2.rfc6750 import BearerTokenValidator as _BearerTokenValidator
from flask import abort, jsonify, request
from werkzeug.http import HTTP_STATUS_CODES

from ..current import context_globals, current_request
from ..plumbing.error_renderers import renderer_for
from .requests import is_form_post
from ..models import Client, User
from ..services import tokens
from ..services.clients import get_client

__all__ = ["AccessToken", "current_token", "require_oauth"]


class AccessToken:
    """A verified access token: its claims and its live user (None for client credentials)."""

    __slots__ = ("claims", "user", "_client")

    def __init__(self, claims: dict, user: User | None):
        self.claims = claims
        self.user = user
        self._client: Client | None = None

    @property
    def scope(self) -> str:
        return self.claims["scope"]

    @property
    def client_id(self) -> str | None:
        return self.claims.get("client_id")

    def get_scope(self) -> str:
        return self.scope

    def get_user(self) -> User | None:
        return self.user

    def get_client(self) -> Client | None:
        """The client the token was issued to (looked up on first use: not on the hot path)."""
        if self._client is None and self.client_id:
            self._client = get_client(self.client_id)
        return self._client

    def is_expired(self) -> bool:
        return False  # checked when the token was verified

    def is_revoked(self) -> bool:
        return False  # checked when the token was verified


# --- RFC 6750 errors, each with the WWW-Authenticate header the RFC asks for ----------


class MissingTokenError(MissingAuthorizationError):
    """No bearer token in the request: a bare challenge, no `error` attribute (RFC 6750 §3.1).

    A subclass of Authlib's, so `require_oauth(optional=True)` still lets such requests through.
    """

    description = "send an access token in the Authorization header (Bearer)"

    def get_headers(self):
        return OAuth2Error.get_headers(self) + [("WWW-Authenticate", "Bearer")]


class InvalidBearerRequestError(OAuth2Error):
    """The token sent in more than one way, or twice (RFC 6750 sections 2 and 3.1)."""

    error = "invalid_request"
    status_code = 400

    def get_headers(self):
        challenge = f'Bearer error="invalid_request", error_description="{self.description}"'
        return super().get_headers() + [("WWW-Authenticate", challenge)]


class InvalidTokenError(OAuth2Error):
    error = "invalid_token"
    description = "the access token is malformed, expired or revoked"
    status_code = 401

    def get_headers(self):
        challenge = f'Bearer error="invalid_token", error_description="{self.description}"'
        return super().get_headers() + [("WWW-Authenticate", challenge)]


class InsufficientScopeError(OAuth2Error):
    error = "insufficient_scope"
    status_code = 403

    def __init__(self, scope: str):
        super().__init__(f"the access token lacks the scope {scope}")
        self.scope = scope

    def get_headers(self):
        challenge = f'Bearer error="insufficient_scope", scope="{self.scope}"'
        return super().get_headers() + [("WWW-Authenticate", challenge)]


class UserRequiredError(OAuth2Error):
    """The token has no user (client credentials) but the resource belongs to a user."""

    error = "access_denied"
    description = "this resource needs a token issued to a user, not to a client alone"
    status_code = 403

    def get_headers(self):
        # RFC 6750 section 3 asks for a challenge; the scope is right, the user's sign-in is what
        # is missing: RFC 9470's error says so
        challenge = f'Bearer error="insufficient_user_authentication", error_description="{self.description}"'
        return super().get_headers() + [("WWW-Authenticate", challenge)]


# --- the validator ----------------------------------------------------------------


class BearerTokenValidator(_BearerTokenValidator):
    """Check our own JWT access tokens locally: one database query on success."""

    def authenticate_token(self, token_string: str) -> AccessToken:
        try:
            claims = tokens.verify_access_token(token_string)
        except tokens.InvalidToken as err:
            raise InvalidTokenError(str(err)) from None
        return AccessToken(claims, None)

    def validate_token(self, token: AccessToken, scopes, request, user_required: bool = False) -> None:
        check_token_live(token)
        if self.scope_insufficient(token.scope, scopes):
            raise InsufficientScopeError(" ".join(scopes))
        try:
            tokens.check_audience(token.claims, scopes)  # a token with the scope but for another resource
        except tokens.InvalidToken as err:
            raise InvalidTokenError(str(err)) from None
        if user_required and token.user is None:
            raise UserRequiredError()


def check_token_live(token: AccessToken) -> None:
    """Guarantee the token is not revoked and, if it has a user, not older than their password."""
    if tokens.has_user(token.claims):
        token.user = tokens.token_user(token.claims)
        if token.user is None:
            raise InvalidTokenError("the access token was revoked")
    elif tokens.is_revoked(token.claims["jti"]):
        raise InvalidTokenError("the access token was revoked")


# --- the protector ----------------------------------------------------------------


class ResourceProtector(_ResourceProtector):
    """Authlib's protector, reading only the Authorization header and rendering errors for the path."""

    def acquire_token(self, scopes=None, **kwargs):
        """Authlib's, given Flask's request itself: the check reads one header, so the JSON request
        wrapper Authlib would build (and its body parsing) is not needed on this hot path."""
        kwargs["scopes"] = [scopes] if isinstance(scopes, str) else scopes
        token = self.validate_request(request=current_request(), **kwargs)
        token_authenticated.send(self, token=token)
        context_globals().authlib_server_oauth2_token = token
        return token

    def validate_request(self, scopes, request, form_token: bool = False, **kwargs):
        """Authlib's, where `form_token` (userinfo) also takes the token from a POST's form body."""
        validator, token_string = self.parse_request_authorization(request, form_token)
        validator.validate_request(request)
        token = validator.authenticate_token(token_string)
        validator.validate_token(token, scopes, request, **kwargs)
        return token

    def parse_request_authorization(self, request, form_token: bool = False):
        """The token of the Authorization header; with `form_token`, or of a form POST's
        `access_token` (RFC 6750 section 2.2, as IdentityServer's userinfo endpoint takes it), but
        never both (section 2), nor either beside one in the query (section 3.1: more than one
        method is invalid_request; the query alone is no method, a bare challenge). The body is read
        only there, and only a form POST's (never a GET's)."""
        header = request.headers.get("Authorization", "").strip()
        scheme, _, token_string = header.partition(" ")
        posted = request.form.getlist("access_token") if form_token and is_form_post(request.environ) else []
        if form_token and any(request.args.getlist("access_token")) and (posted or scheme.lower() == "bearer"):
            # a query's token is no method of ours, but beside another it is a second one (section 3.1)
            raise InvalidBearerRequestError("send the access token once, in the Authorization header or the body")
        if posted:
            if scheme.lower() == "bearer" or len(posted) > 1:
                raise InvalidBearerRequestError("send the access token once, in the Authorization header or the body")
            if not posted[0].strip():
                raise InvalidTokenError("the access_token parameter holds no token")
            return self.get_token_validator("bearer"), posted[0].strip()
        if scheme.lower() != "bearer":
            # no credentials, or a scheme we do not accept: a bare challenge (RFC 6750 §3.1)
            raise MissingTokenError()
        token_string = token_string.strip()
        if not token_string:
            raise InvalidTokenError("the Authorization header holds no token")
        return self.get_token_validator("bearer"), token_string

    def raise_error_response(self, error: OAuth2Error):
        """Abort with the error as a finished response, so the app's error pages keep its challenge."""
        response = _render(error)
        for name, value in error.get_headers():
            if name.lower() == "www-authenticate":
                response.headers[name] = value
        abort(response)


def _render(error: OAuth2Error):
    status = error.status_code
    render = renderer_for(request.path)
    if render is not None:
        return render(status, HTTP_STATUS_CODES.get(status, "Error"), error.get_error_description())
    body = dict(error.get_body())
    if isinstance(error, MissingTokenError):
        # no token, no error code (RFC 6750 section 3.1), as its bare challenge: Authlib's
        # "missing_authorization" is no OAuth error
        body.pop("error", None)
    response = jsonify(body)
    response.status_code = status
    return response


require_oauth = ResourceProtector()
require_oauth.register_token_validator(BearerTokenValidator())

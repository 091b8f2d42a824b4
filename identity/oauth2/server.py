"""The Authlib wiring, top to bottom: the grants, endpoints and token issuing this server supports."""

import secrets

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.endpoint import EndpointRequest
from authlib.oauth2.rfc6749.errors import InsecureTransportError, InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from flask import Flask

from ..constants import OFFLINE_ACCESS
from ..current import context_globals, current_application, current_request
from ..services import issued_grants as grant_service
from ..services import metrics, tokens
from ..services.clients import cached_client, is_client_id
from .client import OAuthClient
from .client_auth import authenticate_client
from .context import grant_context
from .error_text import install as install_safe_error_text
from .parameters import request_parameter_error
from .requests import FORM_TYPE, FormRequest, has_other_body, is_form_post
from .grant_types import (
    ALL_AUTH_METHODS,
    SECRET_AUTH_METHODS,
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    CodeChallenge,
    HybridCodeGrant,
    HybridGrant,
    ImplicitGrant,
    OpenIDCode,
    PasswordGrant,
    RefreshTokenGrant,
)
from .token_records import find_token


def query_client(client_id):
    """Find an enabled client (cached for the request: Authlib asks several times)."""
    if not is_client_id(client_id):
        return None
    cache = context_globals().setdefault("oauth_clients", {})
    if client_id not in cache:
        row = cached_client(client_id)
        cache[client_id] = OAuthClient(row) if row is not None and row.enabled else None
    return cache[client_id]


def issue_tokens(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
    """Token generator: an RFC 9068 JWT access token, and a refresh token only with offline_access."""
    context = grant_context()
    # each scope token once, in the order asked: RFC 6749 section 3.3's tokens are a list of
    # ranges, so one named twice is one range (as IdentityServer4 grants it), and `aud` one audience
    scope = " ".join(dict.fromkeys((scope or "").split()))
    issued = tokens.issue_access_token(client.row, user, scope, auth_time=context.auth_time, sid=context.sid,
                                       amr=context.amr)
    longest = current_application().config["JWT_MAX_LENGTH"]
    if len(issued.token) > longest:  # every check of this server's (bearer, introspection) would refuse it
        raise InvalidScopeError(f"the access token for these scopes would be {len(issued.token)} bytes, more than "
                                f"this server takes ({longest}, JWT_MAX_LENGTH): ask for fewer scopes")
    context.issued_jti, context.issued_expires_at = issued.jti, issued.claims["exp"]
    # counted by count_issued once its response is sent: a write that refuses it (a code or refresh
    # token used or revoked meanwhile) leaves nothing issued
    context.issued_as = ("hybrid" if grant_type == "code" else grant_type, client.client_id)  # hybrid's is "code"
    token = {"token_type": "Bearer", "access_token": issued.token, "expires_in": issued.expires_in, "scope": scope}
    granted = context.rotating.scope if context.rotating is not None else scope
    if include_refresh_token and user is not None and client.offers_refresh_tokens and OFFLINE_ACCESS in granted.split():
        token["refresh_token"] = secrets.token_urlsafe(32)
    return token


def count_issued() -> None:
    """Count the access token this request issued (identity_tokens_issued_total), once, after the
    writes that keep it committed and the response carrying it is made."""
    context = grant_context()
    if context.issued_as is not None:
        metrics.count_token(*context.issued_as)
        context.issued_as = None


def save_token(token, request):
    """Persist what must outlive the response: the rotation of the old refresh token and the new one.

    Tokens are signed before this point, so the write transaction holds only these statements.
    """
    context = grant_context()
    refresh_token = token.get("refresh_token")
    if context.rotating is not None:
        if not grant_service.rotate_refresh_token(context.rotating, refresh_token, scope=context.rotating.scope,
                                                access_token_jti=context.issued_jti):
            raise InvalidGrantError("refresh token was already used")
        return
    if not grant_service.keep_issued_tokens(
        refresh_token, family_id=context.family_id, client_id=request.client.client_id,
        user_id=request.user.id if request.user is not None else None, session_id=context.sid, scope=token["scope"],
        auth_time=context.auth_time, access_token_jti=context.issued_jti, expires_in=token["expires_in"],
        amr=context.amr, password_version=context.password_version,
    ):
        raise InvalidGrantError("the password changed, or the user was disabled, while the request was checked")


class RevocationEndpoint(_RevocationEndpoint):
    """RFC 7009 for access and refresh tokens; public clients may revoke their own tokens."""

    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def check_params(self, request, client):
        """As Authlib's, but a hint the server does not understand is ignored, not an error (401
        unsupported_token_type): a hint only orders the search (RFC 7009 section 2.1), and
        find_token searches every type this server issues."""
        if not request.form.get("token"):  # token= is as if omitted (RFC 6749 section 3.1)
            raise InvalidRequestError("token is required")

    def revoke_token(self, token, request):
        token.revoke()  # a service call that commits (services/issued_grants.py)


class IntrospectionEndpoint(_IntrospectionEndpoint):
    """RFC 7662: a confidential client introspects the tokens issued to it; anything else is inactive."""

    CLIENT_AUTH_METHODS = SECRET_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def authenticate_token(self, request, client):
        """As Authlib's, but a hint the server does not understand is ignored, not an error (RFC 7662 section 2.1)."""
        if not request.form.get("token"):  # token= is as if omitted (RFC 6749 section 3.1)
            raise InvalidRequestError("token is required")
        hint = request.form.get("token_type_hint")
        token = self.query_token(request.form["token"], hint if hint in self.SUPPORTED_TOKEN_TYPES else None)
        if token and self.check_permission(token, client, request):
            return token
        return None

    def check_permission(self, token, client, request):
        return token.check_client(client)

    def introspect_token(self, token):
        return token.introspection()


class Server(AuthorizationServer):
    """Authlib's server; form POSTs get a request parsed once (see requests.py), every request's
    parameters are checked as such first (parameters.py), and clients authenticate by client_auth.py."""

    def create_oauth2_request(self, request):
        if isinstance(request, OAuth2Request):
            return request
        http_request = current_request()
        if is_form_post(http_request.environ):
            return FormRequest(http_request)
        return super().create_oauth2_request(request)

    def authenticate_client(self, request, methods, endpoint="token"):
        return authenticate_client(self.query_client, request, methods, endpoint)

    def token_endpoint_auth_methods(self) -> list[str]:
        """The client authentication methods some registered grant of the token endpoint takes
        (discovery's token_endpoint_auth_methods_supported): `none` only with a grant a public
        client may use, not with client_credentials alone."""
        taken = {method for grant, _ in self._token_grants for method in grant.TOKEN_ENDPOINT_AUTH_METHODS}
        return [method for method in ALL_AUTH_METHODS if method in taken]

    def checked_request(self, request):
        """(the OAuth2 request, None), or (None, the error that answers it): a request over plain
        HTTP (Authlib refuses to build one), a body that is not form-urlencoded, or one whose
        parameters are refused as such."""
        if not isinstance(request, OAuth2Request) and has_other_body(current_request().environ):
            return None, InvalidRequestError(f"send the parameters as {FORM_TYPE}")
        try:
            request = self.create_oauth2_request(request)
        except InsecureTransportError as error:
            return None, error
        return request, request_parameter_error(request)

    def create_token_response(self, request=None):
        request, error = self.checked_request(request)
        if error is None and not request.payload.grant_type:
            # RFC 6749 5.2: a missing required parameter is invalid_request (Authlib: unsupported_grant_type)
            error = InvalidRequestError("grant_type is required")
        if error is not None:
            return self.handle_error_response(request, error)
        response = super().create_token_response(request)
        if response.status_code == 200:
            count_issued()
        return response

    def create_endpoint_response(self, name, request=None):
        if not isinstance(request, EndpointRequest):
            request, error = self.checked_request(request)
            if error is not None:
                return self.handle_error_response(request, error)
        return super().create_endpoint_response(name, request)


def authorization_server() -> AuthorizationServer:
    """This app's server (one per app, so several apps in one process do not share grants)."""
    return current_application().extensions["authorization_server"]


def init_app(app: Flask) -> None:
    install_safe_error_text()
    server = Server()
    app.extensions["authorization_server"] = server
    server.init_app(app, query_client=query_client, save_token=save_token)
    server.register_token_generator("default", issue_tokens)
    enabled = set(app.config["GRANT_TYPES_ENABLED"])
    if enabled & {"authorization_code", "hybrid"}:
        code_grant = AuthorizationCodeGrant if "authorization_code" in enabled else HybridCodeGrant
        server.register_grant(code_grant, [OpenIDCode(require_nonce=False), CodeChallenge(required=True)])
    if "hybrid" in enabled:
        server.register_grant(HybridGrant, [CodeChallenge(required=True)])
    if "implicit" in enabled:
        server.register_grant(ImplicitGrant)
    if "refresh_token" in enabled:
        server.register_grant(RefreshTokenGrant)
    if "client_credentials" in enabled:
        server.register_grant(ClientCredentialsGrant)
    if "password" in enabled:
        server.register_grant(PasswordGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)

"""Grant classes: Authlib's, with the defaults this provider must not keep overridden (each override says why).

Each hook is a few lines that delegate to a service.
"""

import re
import secrets

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError, InvalidGrantError, InvalidRequestError, InvalidScopeError, UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant as _AuthorizationCodeGrant
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant as _ClientCredentialsGrant
from authlib.oauth2.rfc6749.grants import RefreshTokenGrant as _RefreshTokenGrant
from authlib.oauth2.rfc6749.grants import ResourceOwnerPasswordCredentialsGrant as _PasswordGrant
from authlib.oauth2.rfc6749.grants.authorization_code import validate_code_authorization_request
from authlib.oauth2.rfc7636 import CodeChallenge as _CodeChallenge
from authlib.oidc.core.grants import OpenIDCode as _OpenIDCode
from authlib.oidc.core.grants import OpenIDHybridGrant as _OpenIDHybridGrant
from authlib.oidc.core.grants import OpenIDImplicitGrant as _OpenIDImplicitGrant
from authlib.oidc.core.grants.util import validate_form_post_redirect_uri, validate_nonce

from ..clock import now
from ..constants import OFFLINE_ACCESS, STANDARD_IDENTITY_RESOURCES
from ..services import accounts, issued_grants
from ..services.id_tokens import build_id_token
from ..services.mfa import AMR_PASSWORD, misses_required_factor
from .context import grant_context, resume_grant
from .response_modes import RESPONSE_MODES, takes_form_post

ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
SECRET_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
#: RFC 7636 section 4.1: a code_verifier (and so a challenge) is 43 to 128 unreserved characters
PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")


# IdentityServer4's answer when a request without `scope` leaves the client none to default to
NO_SCOPE_TO_GRANT = "no scope requested, and the client is allowed none this grant can issue"


def check_requested_scope(client, scope: str | None) -> None:
    """Every requested scope is allowed for the client; offline_access only with allow_offline_access
    and the refresh_token grant on, even when allowed_scopes lists it (client.allowed_scope_names).
    Also what a code or refresh token would issue: the client's scopes now, not when it was granted
    (an operator may have removed one since; IdentityServer too answers invalid_scope)."""
    allowed = client.allowed_scope_names
    refused = [s for s in (scope or "").split() if s not in allowed]
    if refused:
        raise InvalidScopeError(f"scope not allowed for this client: {' '.join(refused)}")


VERIFIED_EMAIL_REQUIRED = "the client requires a verified email address; verify it on the account page"


def check_second_factor(client, amr: str | None) -> None:
    """A client with require_mfa gets tokens only from a sign-in that used a second factor: a code
    or refresh token granted before the operator set it (a sign-in with the password alone)
    issues nothing more to it, as the authorization endpoint would now ask for the factor."""
    if misses_required_factor(client.row, amr):
        raise InvalidGrantError("the client requires a second factor, which this sign-in did not use")


def check_verified_email(client, user) -> None:
    """A client with require_verified_email gets no token for a user whose address is not verified
    (docs/email.md), as the authorization endpoint and the password grant refuse one: a code or
    refresh token granted before the operator set it, or before a seed changed the address, issues
    nothing more to it."""
    if client.row.require_verified_email and not user.email_verified:
        raise InvalidGrantError(VERIFIED_EMAIL_REQUIRED)


def check_code_challenge(client, code_challenge: str | None) -> None:
    """A client that requires PKCE (public, or require_pkce) redeems only a code issued with a
    code_challenge: one issued without, before a seed set require_pkce, issues nothing more to it,
    as the authorization endpoint would now refuse the request that made it (RFC 9700 2.1.1)."""
    if client.requires_pkce and not code_challenge:
        raise InvalidGrantError("the client requires PKCE, and this code was issued without a code_challenge")


def check_response_mode(request, redirect_uri: str) -> None:
    """Known response mode; tokens never travel in a query string; form_post only to a redirect
    URI a browser can post to (the error is then redirected to it, as response_modes.py says).
    Sent without a value it is as if omitted (RFC 6749 section 3.1)."""
    mode = request.payload.data.get("response_mode")
    if not mode:
        return
    if mode not in RESPONSE_MODES:
        raise InvalidRequestError("unsupported response_mode", redirect_uri=redirect_uri)
    if mode == "query" and request.payload.response_type != "code":
        raise InvalidRequestError("response_mode=query is not allowed when tokens are returned", redirect_uri=redirect_uri,
                                  redirect_fragment=True)
    if mode == "form_post" and not takes_form_post(redirect_uri):
        raise InvalidRequestError("response_mode=form_post needs an http or https redirect_uri", redirect_uri=redirect_uri)


def _user_id(request) -> int | None:
    """The signed-in user the authorization request is answered for, if any yet."""
    return request.user.id if request.user is not None else None


class AuthorizeRules:
    """Rules shared by every grant served at the authorization endpoint.

    create_authorization_response returns the parameters to send (state included); where and
    how they travel is worked out once, in response_modes.py, and delivered by the web layer.
    """

    def generate_authorization_code(self):
        return secrets.token_urlsafe(32)  # 256 bits in one call (Authlib draws 48 characters one by one)

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        uri = request.payload.redirect_uri
        if not uri:
            raise InvalidRequestError("redirect_uri is required")
        if not client.check_redirect_uri(uri):
            raise InvalidRequestError("redirect_uri is not registered for this client")
        return uri

    def validate_requested_scope(self):
        if not self.request.payload.scope:  # as IdentityServer4; RFC 6749 section 3.3 lets it fail
            raise InvalidScopeError("scope is missing")
        check_requested_scope(self.request.client, self.request.payload.scope)

    def save_authorization_code(self, code, request, front_channel_jti=None):
        context = grant_context()
        data = request.payload.data
        issued_grants.save_authorization_code(
            code, client_id=request.client.client_id, user_id=request.user.id, session_id=context.sid,
            redirect_uri=request.payload.redirect_uri, response_type=request.payload.response_type,
            scope=request.scope, nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"), auth_time=context.auth_time or now(),
            front_channel_jti=front_channel_jti, amr=context.amr,
            access_expires_at=context.issued_expires_at if front_channel_jti else None,
            password_version=request.user.password_version,
        )

    def exists_nonce(self, nonce, request):
        return issued_grants.code_nonce_seen(request.payload.client_id, nonce, _user_id(request))

    def id_token(self, *, code=None, access_token=None) -> str:
        request = self.request
        return build_id_token(
            client_id=request.client.client_id, user=request.user, auth_time=grant_context().auth_time or now(),
            nonce=request.payload.data.get("nonce"), sid=grant_context().sid, code=code, access_token=access_token,
            scope=request.scope if request.payload.response_type == "id_token" else "", amr=grant_context().amr,
        )

    def token_params(self, grant_user) -> list[tuple[str, str]]:
        token = self.generate_token(grant_type="implicit", user=grant_user, scope=self.request.scope, include_refresh_token=False)
        return [(k, token[k]) for k in ("access_token", "token_type", "expires_in", "scope")]

    def with_state(self, params):
        state = self.request.payload.state
        return params + [("state", state)] if state else params


class CodeView:
    """A code being redeemed, and its user, as Authlib's code grant and PKCE extension read them."""

    def __init__(self, row, user):
        self.row = row
        self.user = user
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self):
        return self.row.redirect_uri

    def get_scope(self):
        return self.row.scope

    def get_nonce(self):
        return self.row.nonce

    def get_auth_time(self):
        return self.row.auth_time


class AuthorizationCodeGrant(AuthorizeRules, _AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    DEFAULT_RESPONSE_MODE = "query"

    def validate_authorization_request(self):
        redirect_uri = validate_code_authorization_request(self)
        check_response_mode(self.request, redirect_uri)
        validate_form_post_redirect_uri(self, redirect_uri)
        return redirect_uri

    def create_authorization_response(self, redirect_uri, grant_user):
        self.request.user = grant_user
        code = self.generate_authorization_code()
        self.save_authorization_code(code, self.request)
        return self.with_state([("code", code)])

    found = None  # the code row this request offered, once read

    def validate_token_request(self):
        """Authlib's checks (client, code, redirect_uri, then PKCE in the hook); any failure after
        the code was found burns it (RFC 9700 section 2.1.1): a later attempt is a replay."""
        try:
            super().validate_token_request()
            if not self.request.authorization_code.get_scope().split():
                # `scopes remove` took out every scope it carried: refused, as it was before the
                # removal (a scope since removed from the client), never a token of no scope
                raise InvalidScopeError("the scopes this code was granted were removed since")
            check_requested_scope(self.request.client, self.request.authorization_code.get_scope())
            check_second_factor(self.request.client, self.found.amr)
            check_verified_email(self.request.client, self.request.authorization_code.user)
            check_code_challenge(self.request.client, self.found.code_challenge)
            if not self.request.client.check_redirect_uri(self.found.redirect_uri):  # removed since (clients update)
                raise InvalidGrantError("redirect_uri is no longer registered for this client")
        except OAuth2Error as err:
            if self.found is not None:
                issued_grants.burn_authorization_code(self.found, self.found.client_id, err.error, err.description)
            raise

    def query_authorization_code(self, code, client):
        row = issued_grants.find_authorization_code(code, client.client_id)
        if row is None:
            return None
        self.found = row
        resume_grant(row)
        return CodeView(row, issued_grants.user_of_grant(row))

    def authenticate_user(self, authorization_code):
        return authorization_code.user

    def save_token(self, token):
        """Consume the code and store the refresh token it produced (if any) in one write, after signing."""
        context = grant_context()
        refused = issued_grants.redeem_authorization_code(self.request.authorization_code.row, token.get("refresh_token"),
                                                          scope=token["scope"], access_token_jti=context.issued_jti,
                                                          access_expires_at=context.issued_expires_at)
        if refused is not None:
            raise InvalidGrantError(refused)

    def delete_authorization_code(self, authorization_code):
        pass  # consumed in save_token, once the tokens it produced are signed


class HybridCodeGrant(AuthorizationCodeGrant):
    """The code grant at the token endpoint only: it redeems the hybrid flow's codes while the
    authorization_code grant itself is off, so response_type=code is not served (nor advertised)."""

    RESPONSE_TYPES = set()


class OpenIDCode(_OpenIDCode):
    """ID tokens from the token endpoint, signed by us, with the code's auth_time, nonce and sid."""

    def exists_nonce(self, nonce, request):
        return issued_grants.code_nonce_seen(request.payload.client_id, nonce, _user_id(request))

    def process_token(self, grant, response):
        _, token, _ = response
        if "openid" not in (token.get("scope") or "").split():
            return token
        code = grant.request.authorization_code.row
        token["id_token"] = build_id_token(
            client_id=grant.request.client.client_id, user=grant.request.user, auth_time=code.auth_time,
            nonce=code.nonce, sid=code.session_id, access_token=token["access_token"], amr=code.amr,
            scope=token["scope"],  # with an access token: only the email claims (build_id_token)
        )
        return token


class CodeChallenge(_CodeChallenge):
    """PKCE with S256 only, required for public clients and clients with require_pkce."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge") and grant.request.client.requires_pkce:
            raise InvalidRequestError("code_challenge is required (PKCE with S256)")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        if data.get("code_challenge") and not PKCE_VALUE.fullmatch(data["code_challenge"]):
            raise InvalidRequestError("code_challenge must be 43 to 128 unreserved characters")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):
        """Authlib's check, whose pattern ends in `$` and so also takes a verifier with a trailing line feed."""
        verifier = grant.request.form.get("code_verifier")
        if verifier and not PKCE_VALUE.fullmatch(verifier):
            raise InvalidRequestError("code_verifier must be 43 to 128 unreserved characters")
        super().validate_code_verifier(grant, result)


class HybridGrant(AuthorizeRules, _OpenIDHybridGrant):
    """code id_token, code token, code id_token token; nonce required only with an ID token."""

    def validate_authorization_request(self):
        if "id_token" in self.request.payload.response_type.split():
            self.register_hook(
                "after_validate_authorization_request_payload",
                lambda grant, uri: validate_nonce(grant.request, grant.exists_nonce, required=True),
            )
        redirect_uri = validate_code_authorization_request(self)
        check_response_mode(self.request, redirect_uri)
        validate_form_post_redirect_uri(self, redirect_uri)
        if "openid" not in self.request.scope.split():
            raise InvalidScopeError("the openid scope is required", redirect_uri=redirect_uri, redirect_fragment=True)
        return redirect_uri

    def create_authorization_response(self, redirect_uri, grant_user):
        self.request.user = grant_user
        code = self.generate_authorization_code()
        types = self.request.payload.response_type.split()
        params = [("code", code)]
        access_token = front_channel_jti = None
        if "token" in types:
            token_params = self.token_params(grant_user)
            access_token, front_channel_jti = token_params[0][1], grant_context().issued_jti
            params += token_params
        # stored with the token's jti, so revoking the code's family revokes the token too
        self.save_authorization_code(code, self.request, front_channel_jti=front_channel_jti)
        if "id_token" in types:
            params.append(("id_token", self.id_token(code=code, access_token=access_token)))
        return self.with_state(params)


class ImplicitGrant(AuthorizeRules, _OpenIDImplicitGrant):
    """id_token and id_token token (the latter only with allow_access_tokens_via_browser)."""

    def authenticate_token_endpoint_client(self):
        client = self.server.query_client(self.request.payload.client_id)
        if client is None:
            raise InvalidClientError(description="unknown client")
        return client

    def validate_authorization_request(self):
        redirect_uri = super().validate_authorization_request()
        check_response_mode(self.request, redirect_uri)
        return redirect_uri

    def validate_requested_scope(self):
        """offline_access is left out, not refused: OpenID Connect Core 11, the OP "MUST ignore the
        offline_access request unless the Client is using a response_type value that would result
        in an Authorization Code being returned", and no implicit response type does."""
        scopes = (self.request.payload.scope or "").split()
        if OFFLINE_ACCESS in scopes:
            self.request.scope = " ".join(s for s in scopes if s != OFFLINE_ACCESS)
        check_requested_scope(self.request.client, self.request.scope)

    def create_authorization_response(self, redirect_uri, grant_user):
        self.request.user = grant_user
        params, access_token = [], None
        if "token" in self.request.payload.response_type.split():
            params = self.token_params(grant_user)
            access_token = params[0][1]
            # recorded so that revoking the app on the grants page revokes it
            issued_grants.record_standalone_access_token(grant_context().issued_jti, user_id=grant_user.id,
                                                  client_id=self.request.client.client_id,
                                                  expires_in=dict(params)["expires_in"],
                                                  password_version=grant_user.password_version)
        params.append(("id_token", self.id_token(access_token=access_token)))
        return self.with_state(params)


class RefreshTokenGrant(_RefreshTokenGrant):
    """Rotation on every use; reuse of a rotated token revokes the family."""

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self):
        """Authlib's checks (the scope asked for, if any, within the token's), then the scope to be
        issued against the client's now: a client may leave out a scope it is no longer allowed."""
        super().validate_token_request()
        check_requested_scope(self.request.client, self.request.payload.scope or self.request.refresh_token.get_scope())
        check_second_factor(self.request.client, self.request.refresh_token.row.amr)
        check_verified_email(self.request.client, issued_grants.user_of_grant(self.request.refresh_token.row))

    def authenticate_refresh_token(self, refresh_token):
        row = issued_grants.usable_refresh_token(refresh_token, self.request.client.client_id)
        if row is None:
            return None
        resume_grant(row)
        grant_context().rotating = row  # consumed atomically when the new token is saved
        return RefreshView(row)

    def authenticate_user(self, refresh_token):
        return issued_grants.user_of_grant(refresh_token.row)  # read with the token, in one query

    def revoke_old_credential(self, refresh_token):
        pass  # consumed in save_token, in the transaction that stores its successor


class RefreshView:
    def __init__(self, row):
        self.row = row

    def check_client(self, client):
        return client.client_id == self.row.client_id

    def get_scope(self):
        return self.row.scope


class ClientCredentialsGrant(_ClientCredentialsGrant):
    """Confidential clients only; no user, no refresh token, API scopes only."""

    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_AUTH_METHODS

    def _scope(self) -> str:
        row = self.request.client.row
        return self.request.payload.scope or " ".join(s for s in row.allowed_scopes if s not in STANDARD_IDENTITY_RESOURCES)

    def validate_requested_scope(self):
        scope = self.request.payload.scope
        check_requested_scope(self.request.client, scope)
        identity = [s for s in (scope or "").split() if s in STANDARD_IDENTITY_RESOURCES]
        if identity:
            raise InvalidScopeError(f"identity scopes need a user: {' '.join(identity)}")
        if not self._scope():
            raise InvalidScopeError(NO_SCOPE_TO_GRANT)

    def create_token_response(self):
        token = self.generate_token(scope=self._scope(), include_refresh_token=False)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class PasswordGrant(_PasswordGrant):
    """Resource owner password credentials, only for clients allowed the `password` grant."""

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def _scope(self) -> str:
        """Without a `scope`, every scope the client may be granted now (offline_access when it is
        offered refresh tokens), as IdentityServer4 answers: not a token of no scope at all."""
        client = self.request.client
        return self.request.payload.scope or " ".join(
            [s for s in client.row.allowed_scopes if s in client.allowed_scope_names and s != OFFLINE_ACCESS]
            + ([OFFLINE_ACCESS] if OFFLINE_ACCESS in client.allowed_scope_names else []))

    def validate_requested_scope(self):
        check_requested_scope(self.request.client, self.request.payload.scope)
        if not self._scope():
            raise InvalidScopeError(NO_SCOPE_TO_GRANT)

    def create_token_response(self):
        token = self.generate_token(user=self.request.user, scope=self._scope())
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def authenticate_token_endpoint_client(self):
        """The client (authenticate_user needs it). A client with require_mfa cannot use this grant:
        its users sign in with a second factor, which the grant cannot check (docs/mfa.md)."""
        client = self.request.client = super().authenticate_token_endpoint_client()
        if client.row.require_mfa and client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("the client requires a second factor, which the password grant cannot check")
        return client

    def authenticate_user(self, username, password):
        """A wrong user name or password is invalid_grant (RFC 6749 section 5.2: the resource
        owner's credentials are the grant), not Authlib's invalid_request. The scope is checked
        first (Authlib checks it after this): a request refused for it is no sign-in, neither a
        password check and its lockout count nor a `sign_in` audit event and counted success."""
        self.validate_requested_scope()
        client = self.request.client
        result = accounts.authenticate(username, password, client_id=client.client_id,
                                       needs_verified_email=client.row.require_verified_email)
        if result.user is None:
            raise InvalidGrantError("the user name or password is incorrect, or the account is temporarily locked")
        if result.needs_second_factor:  # this grant has no second step: such users sign in in the browser
            raise InvalidGrantError("the user has a second factor, which the password grant cannot check: "
                                    "use the authorization code flow")
        if result.unverified_email:
            raise InvalidGrantError(VERIFIED_EMAIL_REQUIRED)
        grant_context().auth_time, grant_context().amr = now(), AMR_PASSWORD
        grant_context().password_version = result.user.password_version
        return result.user

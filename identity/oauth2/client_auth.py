"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 section 2.3).

This replaces Authlib's ClientAuthentication, which
- raised UnicodeDecodeError (a 500) for HTTP Basic credentials that are not UTF-8;
- tried each method in turn, so HTTP Basic and a `client_secret` in the body together were
  accepted (section 2.3 allows one method per request), and a wrong Basic secret fell back to
  `none` for a public client;
- failed at once for an unknown client_id but paid an Argon2 verification for a known one, so
  the time of a failed attempt told which client ids exist.

Here the method is the one the request presents (HTTP Basic, a body secret, or neither; an
empty secret is none, as section 2.3.1 lets a client omit it: `client_id:` in HTTP Basic is
what IdentityModel sends for a client without a secret), and every failed secret check costs
at least one Argon2 verification, whether or not the client exists
(client_secrets.verify_client_secret_evenly).
"""

import base64
import binascii
from urllib.parse import unquote_plus

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from werkzeug.urls import iri_to_uri

from ..config.issuer import issuer
from ..services.client_secrets import record_failed_authentication, verify_client_secret_evenly

FAILED = "Client authentication failed."


class ClientAuthenticationFailed(InvalidClientError):
    """invalid_client; as a 401 its challenge is Authlib's with the `realm` that RFC 7617 section 2
    requires of a Basic challenge (Authlib leaves it out): the issuer, which names the server."""

    def get_headers(self):
        headers = OAuth2Error.get_headers(self)
        if self.status_code == 401:
            challenge = f'Basic realm={_quoted(_ascii(issuer()))}, error="{self.error}", error_description="{FAILED}"'
            headers.append(("WWW-Authenticate", challenge))
        return headers


def _quoted(text: str) -> str:
    """`text` as an RFC 9110 quoted-string (section 5.6.4): a backslash or a quote escaped, so the
    realm reads back as the issuer. Written as it was, a backslash at the end of an issuer's path
    escaped the closing quote and no client could read the challenge (a Host-derived issuer, in
    development, is the caller's text)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ascii(uri: str) -> str:
    """The issuer as a header can carry it: an international one (https://id.例え.jp, which the
    settings take) in its URI form, the host in IDNA and the path percent-encoded; as written the
    challenge was not Latin-1, and no invalid_client answer could be sent at all."""
    if uri.isascii():
        return uri
    try:
        return iri_to_uri(uri)
    except (UnicodeError, ValueError):  # a host with no IDNA form
        return uri.encode("ascii", "replace").decode()


def _failure(methods) -> InvalidClientError:
    # 401 (with WWW-Authenticate: Basic) where HTTP Basic is a method the endpoint accepts
    return ClientAuthenticationFailed(status_code=401 if "client_secret_basic" in methods else 400, description=FAILED)


def _refused(client_id, method: str, endpoint: str, methods) -> InvalidClientError:
    """A failed client authentication, audited (client_secrets.record_failed_authentication)."""
    record_failed_authentication(client_id if _usable(client_id) else None, method, endpoint)
    return _failure(methods)


class UnreadableBasic(ValueError):
    """`Authorization: Basic` credentials that are not Base64 of UTF-8 `id:secret` (also two
    Authorization headers, which gunicorn and granian join with a comma)."""


def basic_credentials(headers) -> tuple[str, str] | None:
    """(client_id, secret) from `Authorization: Basic`, None without one; UnreadableBasic if unreadable."""
    auth = headers.get("Authorization")
    if not auth:
        return None
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise UnreadableBasic() from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise UnreadableBasic()
    # section 2.3.1: each is application/x-www-form-urlencoded before Base64 (`+` is a space, as
    # IdentityServer reads it)
    return unquote_plus(client_id), unquote_plus(secret)


def _usable(value) -> bool:
    return isinstance(value, str) and value != "" and "\x00" not in value


def authenticate_client(query_client, request, methods, endpoint):
    """The authenticated client (and request.auth_method), or an OAuth error."""
    if request.args.get("client_secret"):
        # section 2.3.1: the credentials "MUST NOT be included in the request URI"; ignored, one
        # beside HTTP Basic went unnoticed (and the secret into every log that keeps URLs)
        raise InvalidRequestError("Send client_secret in the request body or HTTP Basic, never in the URI.")
    try:
        basic = basic_credentials(request.headers)
    except UnreadableBasic:  # a failed authentication like a wrong secret: audited, no client named
        raise _refused(None, "client_secret_basic", endpoint, methods) from None
    form = request.form
    if basic is not None:
        # a client_secret or client_id sent without a value is as if omitted (RFC 6749 section 3.1)
        if form.get("client_secret"):
            raise InvalidRequestError("Use one client authentication method: HTTP Basic or client_secret, not both.")
        client_id, secret = basic
        # the query's too: these endpoints read their parameters from the query and the body
        body_id = request.payload.client_id
        if body_id and body_id != client_id:
            raise InvalidRequestError("client_id differs from the HTTP Basic user name.")
        method = "client_secret_basic" if secret else "none"
    elif "client_secret" in form:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        method = "client_secret_post" if secret else "none"
    else:
        client_id, secret, method = request.payload.client_id, None, "none"

    client = query_client(client_id) if _usable(client_id) else None
    accepted = client is not None and method in methods and client.check_endpoint_auth_method(method, endpoint)
    if method == "none":
        # RFC 6749 section 3.2.1: a confidential client must authenticate, at every endpoint
        if not accepted or not client.check_endpoint_auth_method("none", "token"):
            raise _refused(client_id, method, endpoint, methods)
    else:
        hashes = client.row.secret_hashes if accepted else []
        if not verify_client_secret_evenly(hashes or [], secret if _usable(secret) else ""):
            raise _refused(client_id, method, endpoint, methods)
    request.auth_method = method
    return client

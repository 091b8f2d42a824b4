"""Marshmallow schemas for the operator's input: the seed file and `clients add`."""

import ipaddress
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates, validates_schema

from ..constants import ACCESS_TOKEN_LIFETIME_MAX, GRANT_TYPES, PASSWORD_INPUT_MAX
from .login_names import (MAX_EMAIL_LENGTH, MAX_USERNAME_LENGTH, ascii_domain, browser_origin, length_problem,
                          mailbox_problem,
                          name_characters_problem, username_characters_problem)

_NAME = validate.Length(min=1, max=200)
#: grant types a client may not hold together, as IdentityServer4 refuses them: implicit with
#: authorization_code, hybrid with authorization_code, hybrid with implicit (one browser flow each)
FORBIDDEN_GRANT_COMBINATIONS = (("authorization_code", "implicit"), ("authorization_code", "hybrid"),
                                ("implicit", "hybrid"))
#: schemes a browser runs or reads locally instead of navigating to an app
_FORBIDDEN_SCHEMES = {"javascript", "data", "vbscript", "file", "blob", "about"}


def flatten_messages(messages, prefix: str = ""):
    """Yield (dotted field path, message) pairs from marshmallow's nested error messages."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from flatten_messages(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        yield prefix, "; ".join(messages)
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            yield from flatten_messages(value, f"{prefix}[{i}]")
    else:
        yield prefix, str(messages)


def field_errors(messages: dict) -> dict[str, list[str]]:
    """Marshmallow's nested messages as {field path: [message, ...]}."""
    out: dict[str, list[str]] = {}
    for path, message in flatten_messages(messages):
        out.setdefault(path, []).append(message)
    return out


def _split(uri: str):
    """urlsplit, with its ValueError (an unclosed "[", a host that NFKC turns into "@" or "/")
    as a validation message rather than an exception that escapes the schema."""
    try:
        return urlsplit(uri)
    except ValueError as err:
        raise ValidationError(f"{uri!r} cannot be parsed as a URI ({err})") from None


def check_redirect_uri(uri: str) -> None:
    """An absolute URI without a fragment: https, http (loopback or dev), or a private-use scheme."""
    parts = _split(uri)
    if not parts.scheme:
        raise ValidationError(f"{uri!r} is not an absolute URI")
    if "#" in uri:
        raise ValidationError(f"{uri!r} must not contain a fragment")
    if parts.scheme.lower() in _FORBIDDEN_SCHEMES:
        raise ValidationError(f"{uri!r} uses the {parts.scheme}: scheme, which cannot receive a redirect")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ValidationError(f"{uri!r} has no host")
    if any(ch.isspace() for ch in uri):
        raise ValidationError(f"{uri!r} contains white space")
    if "@" in parts.netloc:
        # a redirect URI with userinfo never matches a request (RFC 8252's loopback rule is for the port alone)
        raise ValidationError(f"{uri!r} must not contain user information (user@host)")
    if "\\" in uri:
        raise ValidationError(f"{uri!r} contains a backslash")
    if parts.scheme in ("http", "https"):
        try:
            parts.port  # noqa: B018  (raises on a port that is not a number in range)
        except ValueError:
            # http://127.0.0.1:8O80/cb: no request would match it, not even on another port (RFC 8252)
            raise ValidationError(f"{uri!r} has an invalid port") from None


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _is_loopback(host: str | None) -> bool:
    """localhost, [::1] or an address in 127.0.0.0/8 (RFC 8252's loopback redirect); a host name
    that only starts like one (127.evil.example) is a DNS name like any other."""
    if not host:
        return False
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def outbound_http_allowed() -> bool:
    """Whether plain http is let through where production needs https (a logout URI on a loopback
    host; any host for a redirect URI): in development only."""
    from flask import current_app, has_app_context
    return has_app_context() and current_app.config.get("ENVIRONMENT") in ("development", "testing")


def check_logout_uri(uri: str) -> None:
    """A URI the server may call (back-channel) or frame (front-channel): https, or http on a
    loopback host in development; a host, no user information, no fragment.

    The server makes outbound requests to back-channel URIs: plain http would send logout tokens
    in the clear, and an operator typo should not point the server at an internal address over
    an unauthenticated channel (SSRF), so the rule is as strict as it can be and still testable.
    """
    parts = _split(uri)
    if any(ch.isspace() for ch in uri) or "\\" in uri:
        raise ValidationError(f"{uri!r} contains white space or a backslash")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        raise ValidationError(f"{uri!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"{uri!r} is not an absolute https URL")
    if "#" in uri:
        raise ValidationError(f"{uri!r} must not contain a fragment")
    if "@" in parts.netloc:
        raise ValidationError(f"{uri!r} must not contain user information (user@host)")
    if parts.scheme == "http":
        if not (_is_loopback(parts.hostname) and outbound_http_allowed()):
            raise ValidationError(f"{uri!r} must use https (http only on a loopback host in development)")


def _scheme_host_port(uri: str) -> tuple:
    """What Front-Channel Logout compares: scheme, host and port (the scheme's default if none).
    Called on URIs the field validators have passed."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or {"https": 443, "http": 80}.get(scheme)


def plain_http_off_loopback(uri: str) -> bool:
    """An http URI whose host is not loopback. RFC 9700 section 2.6: authorization responses MUST
    NOT travel unencrypted, so no client gets an http redirect URI but a native app on localhost /
    127.0.0.1 / [::1] (OpenID Connect Core 3.1.2.1 would let a confidential client's code flow
    have one; its code, read off the network, is injected into the attacker's own session)."""
    parts = urlsplit(uri)
    return parts.scheme.lower() == "http" and not _is_loopback(parts.hostname)


def check_origin(origin: str) -> None:
    """scheme://host[:port], as browsers send it in the Origin header (a trailing slash is tolerated);
    an international host must have one IDNA form (login_names.ascii_domain). The scheme may be an
    app's own: a Capacitor or Cordova app's web view sends `capacitor://localhost` or
    `ionic://localhost`; never one whose documents have an opaque origin (`null`: file, data, ...)."""
    parts = _split(origin)
    if (not parts.scheme or parts.scheme.lower() in _FORBIDDEN_SCHEMES or not parts.hostname or parts.path not in ("", "/")
            or parts.query or parts.fragment or "#" in origin or "@" in parts.netloc):
        raise ValidationError(f"{origin!r} is not an origin (scheme://host[:port])")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        raise ValidationError(f"{origin!r} has an invalid port") from None
    if not parts.hostname.isascii() and ascii_domain(parts.hostname) is None:
        raise ValidationError(f"{origin!r}: a browser would send its host in another form; write it as its xn-- form")


def normalize_origin(origin: str) -> str:
    """The Origin header's spelling (login_names.browser_origin): lower-case scheme and host, an
    international host in its IDNA (xn--) form, no default port, no trailing slash. A browser
    sends nothing else: an origin stored in another spelling matched no request."""
    return browser_origin(origin)[1]


class ApiScopeSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=[_NAME, validate.Regexp(r"^[!#-\[\]-~]+$", error="scope names are printable ASCII without spaces, quotes or backslashes")])
    display_name = fields.String(load_default=None, validate=validate.Length(max=200))
    description = fields.String(load_default=None, validate=validate.Length(max=1000))


class ClientSchema(Schema):
    class Meta:
        unknown = RAISE

    client_id = fields.String(required=True, validate=[_NAME, validate.Regexp(r"^[\x21-\x7e]+$", error="client_id is printable ASCII without spaces")])
    client_name = fields.String(load_default=None, validate=validate.Length(max=200))
    client_secrets = fields.List(fields.String(validate=validate.Length(min=1, max=500)), load_default=list)
    allowed_grant_types = fields.List(
        fields.String(validate=validate.OneOf(GRANT_TYPES, error="unknown grant type {input!r}; use one of " + ", ".join(GRANT_TYPES))),
        required=True,
        validate=validate.Length(min=1),
    )
    redirect_uris = fields.List(fields.String(validate=validate.Length(max=2000)), load_default=list)
    post_logout_redirect_uris = fields.List(fields.String(validate=validate.Length(max=2000)), load_default=list)
    require_consent = fields.Boolean(load_default=False)
    require_pkce = fields.Boolean(load_default=True)
    require_mfa = fields.Boolean(load_default=False)  # its users sign in with a second factor (docs/mfa.md)
    require_verified_email = fields.Boolean(load_default=False)
    allowed_cors_origins = fields.List(fields.String(validate=validate.Length(max=500)), load_default=list)
    allowed_scopes = fields.List(fields.String(validate=_NAME), load_default=list)
    allow_offline_access = fields.Boolean(load_default=False)
    allow_access_tokens_via_browser = fields.Boolean(load_default=False)
    access_token_lifetime = fields.Integer(load_default=3600, validate=validate.Range(min=60, max=ACCESS_TOKEN_LIFETIME_MAX))
    enabled = fields.Boolean(load_default=None)  # absent: as it is (a new client: enabled)
    backchannel_logout_uri = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    backchannel_logout_session_required = fields.Boolean(load_default=False)
    frontchannel_logout_uri = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    frontchannel_logout_session_required = fields.Boolean(load_default=False)

    @validates("backchannel_logout_uri")
    def _backchannel_logout_uri(self, value, **kwargs):
        if value is not None:
            check_logout_uri(value)

    @validates("frontchannel_logout_uri")
    def _frontchannel_logout_uri(self, value, **kwargs):
        if value is not None:
            check_logout_uri(value)

    @validates("redirect_uris")
    def _redirect_uris(self, value, **kwargs):
        for uri in value:
            check_redirect_uri(uri)

    @validates("post_logout_redirect_uris")
    def _post_logout_uris(self, value, **kwargs):
        for uri in value:
            check_redirect_uri(uri)

    @validates("allowed_cors_origins")
    def _origins(self, value, **kwargs):
        for origin in value:
            check_origin(origin)

    @post_load
    def _normalize(self, data, **kwargs):
        data["allowed_cors_origins"] = [normalize_origin(o) for o in data["allowed_cors_origins"]]
        return data

    @validates_schema
    def _rules(self, data, **kwargs):
        grants = set(data.get("allowed_grant_types", []))
        if not data.get("client_secrets") and "client_credentials" in grants:
            raise ValidationError("a public client (no client_secrets) cannot use client_credentials", "allowed_grant_types")
        if not data.get("client_secrets") and not data.get("require_pkce", True):
            raise ValidationError("a public client (no client_secrets) must use PKCE", "require_pkce")
        if grants & {"authorization_code", "hybrid", "implicit"} and not data.get("redirect_uris"):
            raise ValidationError("browser-based grant types need at least one redirect URI", "redirect_uris")
        secrets = data.get("client_secrets", [])
        if len(set(secrets)) != len(secrets):  # (not named: the message must not show a secret)
            raise ValidationError("a secret is listed twice", "client_secrets")
        if len(set(data.get("allowed_grant_types", []))) != len(data.get("allowed_grant_types", [])):
            raise ValidationError("grant types are listed twice", "allowed_grant_types")
        if not outbound_http_allowed():  # RFC 9700 section 2.6, whatever the client (plain_http_off_loopback)
            for uri in data.get("redirect_uris", []):
                if plain_http_off_loopback(uri):
                    raise ValidationError(f"{uri!r}: a redirect URI must use https (http only on a loopback "
                                          "host, for a native app)", "redirect_uris")
        front_channel_logout = data.get("frontchannel_logout_uri")
        if front_channel_logout and _scheme_host_port(front_channel_logout) not in {
                _scheme_host_port(uri) for uri in data.get("redirect_uris", [])}:
            # Front-Channel Logout 1.0 section 2: the page framed with the user's sid is the client's own
            raise ValidationError(f"{front_channel_logout!r} must have the same scheme, host and port as a redirect "
                                  "URI", "frontchannel_logout_uri")
        for first, second in FORBIDDEN_GRANT_COMBINATIONS:
            if {first, second} <= grants:
                raise ValidationError(f"{first} and {second} cannot be allowed together; choose one browser flow",
                                      "allowed_grant_types")


def _no_problem(problem):
    """A validator from a function that names a value's problem (login_names), or returns None."""
    def check(value: str) -> None:
        found = problem(value)
        if found:
            raise ValidationError(found)
    return check


def _fits(limit: int):
    """A validator: the value and its normalized form fit the column (login_names.length_problem)."""
    return _no_problem(lambda value: length_problem(value, limit))


class UserSchema(Schema):
    class Meta:
        unknown = RAISE

    username = fields.String(required=True, validate=[validate.Length(min=1), _fits(MAX_USERNAME_LENGTH),
                                                      _no_problem(username_characters_problem)])
    email = fields.Email(load_default=None, validate=[_fits(MAX_EMAIL_LENGTH), _no_problem(mailbox_problem)])
    password = fields.String(required=True, validate=validate.Length(min=1, max=PASSWORD_INPUT_MAX))
    name = fields.String(load_default=None, validate=[validate.Length(max=200), _no_problem(name_characters_problem)])
    enabled = fields.Boolean(load_default=None)  # absent: as it is (a new user: enabled)
    # the operator vouches that the address is the user's (no link is mailed); default: not verified
    email_verified = fields.Boolean(load_default=False)

    @validates_schema
    def _verified_needs_email(self, data, **kwargs):
        if data.get("email_verified") and not data.get("email"):
            raise ValidationError("an address can be verified only if there is one (email)", "email_verified")


class SeedSchema(Schema):
    class Meta:
        unknown = RAISE

    api_scopes = fields.List(fields.Nested(ApiScopeSchema), load_default=list)
    clients = fields.List(fields.Nested(ClientSchema), load_default=list)
    users = fields.List(fields.Nested(UserSchema), load_default=list)

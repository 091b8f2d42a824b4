"""Marshmallow schemas of the local API: they validate requests and generate the OpenAPI document."""

import time

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate

from identity.constants import PASSWORD_INPUT_MAX
from identity.services.password_policy import too_long

from .problems import PROBLEM_TYPES


class _NewPasswordCap(validate.Length):
    """A new password's input cap (maxLength in the OpenAPI document), refused with the policy's own
    message for a password too long ("Use at most 128 characters."), as the pages say it."""

    def _format_error(self, value, message: str) -> str:
        return too_long()


# Generous caps: the password policy gives the real messages; these only keep Argon2's input sane.
_PASSWORD = _NewPasswordCap(max=PASSWORD_INPUT_MAX)


def _unicode_text(value: str) -> None:
    """JSON can carry a lone surrogate (\\ud800), which is no text: the hasher could not encode it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Not valid Unicode text (it contains a lone surrogate).") from None
    if "\x00" in value:
        raise ValidationError("Must not contain a NUL character.")


class PasswordChangeSchema(Schema):
    """The body of POST /localapi/password."""

    class Meta:
        unknown = RAISE

    current_password = fields.String(required=True, validate=[validate.Length(min=1, max=PASSWORD_INPUT_MAX), _unicode_text],
                                     metadata={"description": "The user's password now.", "format": "password"})
    new_password = fields.String(required=True, validate=[_PASSWORD, _unicode_text],
                                 metadata={"description": "The new password: at least PASSWORD_MIN_LENGTH (default 15) "
                                           "and at most PASSWORD_MAX_LENGTH (default 128) characters, not a "
                                           "common password, not the user name or email; maxLength is only "
                                           "the input cap.",
                                           "format": "password"})
    confirm_password = fields.String(required=True, validate=[_PASSWORD, _unicode_text],
                                     metadata={"description": "The new password again.", "format": "password"})
    otp = fields.String(validate=[validate.Length(min=1, max=64), _unicode_text],
                        metadata={"description": "For a user with a second factor: a current code from the "
                                  "authenticator app, or an unused recovery code. Not needed when the token's `amr` "
                                  "has `mfa` and its `auth_time` is within MFA_RECENT_SECONDS (default 300)."})


class EmailChangeSchema(Schema):
    """The body of PUT /localapi/email."""

    class Meta:
        unknown = RAISE

    email = fields.String(required=True, validate=[validate.Length(min=1, max=320), _unicode_text],
                          metadata={"description": "The new address; it replaces the current one once the link "
                                    "mailed to it is followed. Its domain may be international (RFC 6531); "
                                    "the part before the @ must be ASCII.", "format": "idn-email"})
    current_password = fields.String(required=True, validate=[validate.Length(min=1, max=PASSWORD_INPUT_MAX), _unicode_text],
                                     metadata={"description": "The user's password now.", "format": "password"})
    otp = fields.String(validate=[validate.Length(min=1, max=64), _unicode_text],
                        metadata={"description": "For a user with a second factor, as for a password change: a "
                                  "current code from the authenticator app, or an unused recovery code. Not needed "
                                  "when the token's `amr` has `mfa` and its `auth_time` is within "
                                  "MFA_RECENT_SECONDS (default 300)."})


class UtcTimestamp(fields.DateTime):
    """A time the database keeps as Unix seconds, written as RFC 3339 UTC ("2026-01-31T12:00:00Z")."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


class Flag(fields.Boolean):
    """A truth value, written as JSON true or false (SQLite's plain rows give 0 or 1)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else bool(value)


class AccountSchema(Schema):
    """The token's user, as GET /localapi/account returns it (dumped from the user)."""

    class Meta:
        unknown = INCLUDE  # clients must accept members added later

    sub = fields.String(required=True, attribute="subject",
                        metadata={"description": "The user's subject identifier (the `sub` claim)."})
    username = fields.String(required=True)
    email = fields.String(allow_none=True, required=True)
    email_verified = Flag(required=True, metadata={
        "description": "Whether the user has followed a verification link mailed to `email`."})
    pending_email = fields.String(allow_none=True, required=True, metadata={
        "description": "A new address the user asked for; it replaces `email` once verified."})
    name = fields.String(allow_none=True, required=True)
    password_changed_at = UtcTimestamp(required=True, format="iso",
                                          metadata={"description": "When the password last changed (UTC)."})
    mfa_enabled = Flag(required=True, attribute="has_second_factor", metadata={
        "description": "Whether the user has a second factor: then a password change needs `otp` or a recent "
                       "sign-in with it."})


class SessionSchema(Schema):
    """A browser session or an app grant of the token's user, as GET /localapi/sessions lists it."""

    class Meta:
        unknown = INCLUDE  # clients must accept members added later

    id = fields.String(required=True, metadata={"description": "Opaque id, for DELETE /localapi/sessions/{id}."})
    kind = fields.String(required=True, validate=validate.OneOf(["browser", "app"]),
                         metadata={"description": "`browser`: a sign-in on the server's pages; `app`: a "
                                                  "refresh-token grant held by an app."})
    client_id = fields.String(allow_none=True, required=True,
                              metadata={"description": "The client; null for a browser session of no known client."})
    client_name = fields.String(required=True, metadata={"description": "The client's display name, or \"Browser\"."})
    created_at = UtcTimestamp(required=True, format="iso", metadata={"description": "When it began (UTC)."})
    last_used_at = UtcTimestamp(required=True, format="iso",
                                metadata={"description": "When it was last used or refreshed (UTC)."})
    current = fields.Boolean(required=True, metadata={"description": "Whether this is the caller's own grant."})
    device = fields.String(required=True, metadata={"description": "The user agent, summarised (\"Chrome on Android\"): "
                                                                   "a browser session's at its sign-in, an app "
                                                                   "grant's at its latest refresh."})
    ip_address = fields.String(allow_none=True, required=True,
                               metadata={"description": "The network it was seen from, truncated (/24, /48): a "
                                                        "browser session's at its sign-in, an app grant's at its "
                                                        "latest refresh."})


class ProblemSchema(Schema):
    """An RFC 9457 problem details object."""

    class Meta:
        unknown = INCLUDE  # RFC 9457 allows extension members

    type = fields.String(required=True, metadata={"format": "uri", "examples": [PROBLEM_TYPES[401]]})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)


class ValidationProblemSchema(ProblemSchema):
    """A problem with the fields that failed and why."""

    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True,
                         metadata={"description": "Messages keyed by request field (`body` for the body as a whole)."})

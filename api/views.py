"""The local API: the token user's account and password, for bearer tokens with IdentityServerApi."""

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest

from identity.constants import LOCAL_API_SCOPE
from identity.errors import (AccountLocked, CredentialSuperseded, SecondFactorRequired, ValidationFailed,
                             answered_if_user_removed)
from identity.extensions import limiter, sensitive_limit
from identity.oauth2.resource import InvalidTokenError, current_token, require_oauth
from identity.services.input_schemas import field_errors
from identity.services import accounts, metrics, mfa, verification

from .flat_dump import flat_dumper
from .limits import default_limit, email_limit, per_token_limit, token_key
from .openapi import openapi_document
from .problems import mfa_required, problem, validation_problem
from .schemas import AccountSchema, EmailChangeSchema, PasswordChangeSchema

bp = Blueprint("localapi", __name__, url_prefix="/localapi")
limiter.limit(default_limit)(bp)  # POST /password replaces it with its own limits

password_change_schema = PasswordChangeSchema()
email_change_schema = EmailChangeSchema()
dump_account = flat_dumper(AccountSchema())  # AccountSchema().dump, without its per-field lookups


def _token_revoked() -> None:
    """Answer as the bearer check answers the token from now on (its user removed, or its
    password changed, since the check passed)."""
    require_oauth.raise_error_response(InvalidTokenError("the access token was revoked"))


#: a view's token user removed after the bearer check: answered as the check answers her tokens from now on
token_revoked_if_user_removed = answered_if_user_removed(_token_revoked)


@bp.post("/password")
@limiter.limit(sensitive_limit)
@limiter.limit(per_token_limit, key_func=token_key)
@require_oauth(LOCAL_API_SCOPE, user_required=True)
@token_revoked_if_user_removed
def change_password():
    """Change the token user's password; 204 on success, a problem otherwise."""
    try:
        data = load_body(password_change_schema)
    except ValidationError as err:
        return validation_problem(body_errors(err))
    try:
        accounts.change_password(current_token.user.id, data["current_password"], data["new_password"],
                                 data["confirm_password"], client_id=current_token.client_id, otp=data.get("otp"),
                                 recent_mfa=_recent_mfa(), password_version=current_token.claims["pwv"])
    except SecondFactorRequired as err:
        return _second_factor_required(err)
    except CredentialSuperseded:  # the same change sent twice, or another, committed first
        _token_revoked()
    except ValidationFailed as err:
        return validation_problem(err.errors, "The password was not changed; see errors.")
    except AccountLocked as err:
        return problem(429, "Account temporarily locked", "Too many wrong passwords; try again later.",
                       headers={"Retry-After": str(err.retry_after)})
    metrics.count_password_change("api")
    return "", 204


@bp.post("/email/verification")
@limiter.limit(default_limit)  # per IP: the limits below replace the blueprint's
@limiter.shared_limit(email_limit, scope="localapi-email", key_func=token_key)
@limiter.limit(per_token_limit, key_func=token_key)
@require_oauth(LOCAL_API_SCOPE, user_required=True)
@token_revoked_if_user_removed
def send_email_verification():
    """Mail a verification link to the address that awaits one; 202 (the mail leaves after the answer)."""
    try:
        verification.send_verification(current_token.user.id, client_id=current_token.client_id)
    except verification.NothingToVerify:
        return problem(409, "Nothing to verify", "The account has no address waiting to be verified.")
    except verification.TooManyMails as err:
        return _too_many_mails(err)
    return _accepted()


@bp.put("/email")
@limiter.shared_limit(email_limit, scope="localapi-email", key_func=token_key)
@limiter.limit(sensitive_limit)
@limiter.limit(per_token_limit, key_func=token_key)
@require_oauth(LOCAL_API_SCOPE, user_required=True)
@token_revoked_if_user_removed
def change_email():
    """Ask to change the address; 202: it changes once the link mailed to the new one is followed."""
    try:
        data = load_body(email_change_schema)
    except ValidationError as err:
        return validation_problem(body_errors(err))
    try:
        verification.request_email_change(current_token.user.id, data["email"], data["current_password"],
                                          client_id=current_token.client_id, otp=data.get("otp"),
                                          recent_mfa=_recent_mfa())
    except SecondFactorRequired as err:
        return _second_factor_required(err)
    except ValidationFailed as err:
        return validation_problem(err.errors, "The address was not changed; see errors.")
    except AccountLocked as err:
        return problem(429, "Account temporarily locked", "Too many wrong passwords; try again later.",
                       headers={"Retry-After": str(err.retry_after)})
    except verification.TooManyMails as err:
        return _too_many_mails(err)
    return _accepted()


def _accepted() -> Response:
    """202 with no body, so with no Content-Type either: Flask labels an empty answer text/html
    (the 204s lose theirs in the headers layer, identity/plumbing/headers.py)."""
    response = Response(status=202)
    del response.headers["Content-Type"]
    return response


def _second_factor_required(err: SecondFactorRequired) -> Response:
    return mfa_required(f"This account has a second factor: {err}.")


def _recent_mfa() -> bool:
    """Whether the token's sign-in used a second factor within MFA_RECENT_SECONDS (its amr and auth_time)."""
    return mfa.recently_verified(current_token.claims.get("amr"), current_token.claims.get("auth_time"))


def _too_many_mails(err) -> Response:
    return problem(429, "Too many mails", "The account was sent several links in the last hour; try again later.",
                   headers={"Retry-After": str(err.retry_after)})


@bp.get("/account")
@require_oauth(LOCAL_API_SCOPE, user_required=True)
def account():
    """Return the token user's account, for an app's settings screen."""
    return jsonify(dump_account(current_token.user))


@bp.get("/openapi.json")
@require_oauth(LOCAL_API_SCOPE)
def openapi():
    """Return the OpenAPI 3.1 document of the local API."""
    return jsonify(openapi_document())


def load_body(schema):
    """Return the JSON body loaded by `schema`; a ValidationError names what is wrong with it."""
    if not request.is_json:
        raise ValidationError("Send a JSON object with Content-Type: application/json.", "body")
    try:
        body = request.get_json()
    except (BadRequest, RecursionError):  # the json module raises RecursionError on deep nesting
        raise ValidationError("The body is not valid JSON.", "body") from None
    return schema.load(body)


def body_errors(err: ValidationError) -> dict[str, list[str]]:
    """Field -> [messages]; marshmallow's `_schema` (the body as a whole) is called `body`."""
    errors = field_errors(err.normalized_messages())
    if "_schema" in errors:
        errors["body"] = errors.pop("_schema")
    return errors

"""The local API: the signed-in user's account and password, for bearer tokens with IdentityServerApi."""

import hashlib
import time

from flask import Blueprint, current_app, jsonify, request
from flask_limiter.util import get_remote_address
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest

from identity.constants import LOCAL_API_SCOPE
from identity.errors import AccountLocked, ValidationFailed
from identity.extensions import limiter
from identity.oauth2.resource import current_token, require_oauth
from identity.services import accounts

from .openapi import openapi_document
from .problems import problem, validation_problem
from .schemas import PasswordChangeSchema

bp = Blueprint("localapi", __name__, url_prefix="/localapi")

password_change_schema = PasswordChangeSchema()


def token_key() -> str:
    """Rate-limit key of the bearer token (its SHA-256; the client address when there is none)."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "token:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()
    return "ip:" + get_remote_address()


def sensitive_limit() -> str:
    return current_app.config["RATELIMIT_SENSITIVE"]


def per_token_limit() -> str:
    return current_app.config["RATELIMIT_PER_TOKEN"]


def load_body(schema):
    """Return the JSON body loaded by `schema`; a ValidationError names what is wrong with it."""
    if not request.is_json:
        raise ValidationError("Send a JSON object with Content-Type: application/json.", "body")
    try:
        body = request.get_json()
    except (BadRequest, RecursionError):  # the json module raises RecursionError on deep nesting
        raise ValidationError("The body is not valid JSON.", "body") from None
    return schema.load(body)


@bp.post("/password")
@limiter.limit(sensitive_limit)
@limiter.limit(per_token_limit, key_func=token_key)
@require_oauth(LOCAL_API_SCOPE, user_required=True)
def change_password():
    """Change the token user's password; 204 on success, a problem otherwise."""
    try:
        data = load_body(password_change_schema)
    except ValidationError as err:
        return validation_problem(field_errors(err.normalized_messages()))
    try:
        accounts.change_password(current_token.user.id, data["current_password"], data["new_password"],
                                 data["confirm_password"], client_id=current_token.client_id)
    except ValidationFailed as err:
        return validation_problem(err.errors, "The password was not changed; see errors.")
    except AccountLocked as err:
        return problem(429, "Account temporarily locked",
                       "Too many wrong passwords; try again later.", headers={"Retry-After": str(err.retry_after)})
    return "", 204


@bp.get("/account")
@require_oauth(LOCAL_API_SCOPE, user_required=True)
def account():
    """Return the token user's account, for an app's settings screen."""
    user = current_token.user
    return jsonify(
        sub=user.subject,
        username=user.username,
        email=user.email,
        name=user.name,
        password_changed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(user.password_changed_at)),
    )


@bp.get("/openapi.json")
@require_oauth(LOCAL_API_SCOPE)
def openapi():
    """Return the OpenAPI 3.1 document of the local API."""
    return jsonify(openapi_document())


def field_errors(messages) -> dict[str, list[str]]:
    """Flatten marshmallow's messages to field -> [messages]; `body` for the body as a whole."""
    if not isinstance(messages, dict):
        return {"body": [str(m) for m in _as_list(messages)]}
    return {("body" if field == "_schema" else str(field)): [str(m) for m in _as_list(msgs)]
            for field, msgs in messages.items()}


def _as_list(messages) -> list:
    return messages if isinstance(messages, list) else [messages]

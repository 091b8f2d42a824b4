"""The authorization endpoint's decisions: validate, sign in if needed, ask consent if needed, respond.

Every answer is a decision (decisions.py) that the web layer renders; nothing here knows a page
or another endpoint. The request's parameters are given, not read here from Flask's request, so
/connect/authorize, the consent page and a sign-in that resumes a pending request all pass the
same checks, in this module.
"""

import json
import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidRequestError
from authlib.oidc.core.errors import (
    ConsentRequiredError, InteractionRequiredError, LoginRequiredError, RegistrationNotSupportedError,
    RequestNotSupportedError, RequestURINotSupportedError,
)
from flask import request
from werkzeug.datastructures import CombinedMultiDict, MultiDict

from ..clock import now
from ..config.issuer import issuer
from ..constants import PROMPT_VALUES
from ..services import consent, logout, mfa, tokens
from .context import grant_context
from .decisions import (
    RESUME_URL_MAX_LENGTH, NeedsConsent, NeedsLogin, NeedsSecondFactor, NeedsVerifiedEmail, ReplyTo, Respond, ShowError,
)
from .parameters import given, has_nul, parameter_error, repeated_names
from .requests import ParamsRequest
from .response_modes import reply_to, response_mode
from .server import authorization_server, count_issued, query_client

AUTHORIZE_PATH = "/connect/authorize"  # the URL a pending request is resumed at (web/return_urls.py)
# the consent form's own fields, and the mark of a POST this site's page made again (web/connect.py
# POSTED_AGAIN): not the request's
FORM_FIELDS = ("csrf_token", "decision", "remember", "posted_again")
INVALID_REQUEST_TITLE = "This sign-in request is not valid"


@dataclass(frozen=True)
class AuthorizationParams:
    """An authorization request's parameters. The query and the form stay apart because a
    parameter may appear only once over both (parameters.py); `values` is what Authlib reads."""

    args: MultiDict
    form: MultiDict
    values: MultiDict
    method: str = "GET"

    @classmethod
    def from_request(cls) -> "AuthorizationParams":
        """The request's parameters sent with a value (parameters.given)."""
        args, form = given(request.args), given(request.form)
        return cls(args, form, CombinedMultiDict([args, form]), request.method)

    @classmethod
    def from_query(cls, query: str) -> "AuthorizationParams":
        """A pending request, from the query string of the URL that would resume it (as a GET)."""
        args = MultiDict(parse_qsl(query))  # the empty ones left out, as from_request does
        return cls(args, MultiDict(), args, "GET")


@dataclass(frozen=True)
class Validated:
    """A request Authlib and parameters.py accept, and where to answer it."""

    grant: object
    reply: ReplyTo
    params: AuthorizationParams
    hinted_subject: str | None = None  # the `sub` of a verified id_token_hint
    claimed_subject: str | None = None  # the ID token `sub` the `claims` parameter asks for by value


@dataclass(frozen=True)
class ConsentPrompt:
    """A valid request waiting for the user's answer on the consent page."""

    request: Validated
    client_name: str
    scopes: list[str]
    rememberable: bool = True  # False where remembered consent would not be used (remembers_consent)


def with_issuer(params: list) -> list:
    """An authorization response's parameters with `iss`, the issuer (RFC 9207; RFC 9700 section
    4.4.2): a client that uses several servers tells by it which one answered (a mix-up attack
    sends a code of this server to another's token endpoint). Discovery says it is sent."""
    return [(k, v) for k, v in params if k != "iss"] + [("iss", issuer())]


def error_decision(error: OAuth2Error, params: AuthorizationParams):
    """Send an error to the client when its redirect URI is validated; otherwise show a page, never redirect."""
    redirect_uri = getattr(error, "redirect_uri", None)
    if not redirect_uri:
        return ShowError(INVALID_REQUEST_TITLE, error.get_error_description() or error.error)
    body = list(error.get_body())
    state = params.values.get("state")
    if state and not any(k == "state" for k, _ in body):
        body.append(("state", state))
    return Respond(ReplyTo(redirect_uri, response_mode(params.values, redirect_uri)), with_issuer(body))


def _prompts(params: AuthorizationParams) -> list[str]:
    return (params.values.get("prompt") or "").split()


# What a new sign-in answers: prompt=login; prompt=select_account (the sign-in page is where a
# person picks the account); max_age=0, which OpenID Connect Core 3.1.2.1 makes prompt=login.
SIGN_IN_PROMPTS = ("login", "select_account")
MAX_AGE = re.compile(r"[0-9]{1,10}")


def _unsupported_prompt(params: AuthorizationParams) -> str | None:
    """The first prompt value this server does not answer (not in discovery's
    prompt_values_supported), if any: Initiating User Registration via OpenID Connect 1.0, 4.1,
    says to refuse it (invalid_request, naming it). Ignored, `prompt=create` (a client's "Create
    an account") was answered at once with a code for whoever was signed in."""
    return next((value for value in _prompts(params) if value not in PROMPT_VALUES), None)


def _max_age(params: AuthorizationParams) -> int | None:
    try:
        return int(params.values["max_age"])
    except (KeyError, ValueError):
        return None


def _max_age_exceeded(principal, params: AuthorizationParams) -> bool:
    max_age = _max_age(params)
    return max_age is not None and principal.is_authenticated and now() - principal.auth_time > max_age


def authorization_params(params: AuthorizationParams, drop_prompt: str | None = None) -> dict:
    """The request's parameters to carry to the next step, without `drop_prompt` (so it is not
    asked again); "login" drops all that a new sign-in answers (SIGN_IN_PROMPTS, and max_age:
    a consent page read for longer than max_age after that sign-in must not ask for another)."""
    carried = {k: v for k, v in params.values.items(multi=False) if k not in FORM_FIELDS}
    dropped = SIGN_IN_PROMPTS if drop_prompt == "login" else (drop_prompt,)
    if drop_prompt and "prompt" in carried:
        remaining = [p for p in carried["prompt"].split() if p not in dropped]
        if remaining:
            carried["prompt"] = " ".join(remaining)
        else:
            del carried["prompt"]
    if drop_prompt == "login":
        carried.pop("max_age", None)
    return carried


def _login_reason(principal, checked: Validated) -> str | None:
    params = checked.params
    if not principal.is_authenticated:
        return "signed_out"
    if set(SIGN_IN_PROMPTS) & set(_prompts(params)) or _max_age(params) == 0:
        return "prompt_login"
    if _max_age_exceeded(principal, params):
        return "max_age"
    if any(subject is not None and subject != principal.user.subject
           for subject in (checked.hinted_subject, checked.claimed_subject)):
        return "another_user"  # the client asks for the user its id_token_hint (or claims) names
    return None


def _claimed_subject(params: AuthorizationParams) -> str | None:
    """The ID token `sub` that the `claims` parameter requests by value, if any. The parameter is
    not supported otherwise (discovery: claims_parameter_supported false, so one that is not
    JSON is ignored), but OpenID Connect Core 3.1.2.2 answers such a request positively only for
    that user: as for an id_token_hint, another user signed in signs in again."""
    try:
        requested = json.loads(params.values.get("claims") or "null")
        value = requested["id_token"]["sub"]["value"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def mfa_requested(checked: Validated) -> bool:
    """Whether this request needs a second factor: `acr_values` that accept mfa and not 1fa, or a
    client with require_mfa. acr_values lists the classes the client accepts, in order of
    preference (OpenID Connect Core 3.1.2.1), so "1fa mfa" is met by a password sign-in."""
    asked = (checked.params.values.get("acr_values") or "").split()
    if checked.grant.request.client.row.require_mfa:
        return True
    return mfa.ACR_MFA in asked and mfa.ACR_ONE_FACTOR not in asked


def _second_factor_missing(checked: Validated, principal) -> str | None:
    """Why a signed-in user cannot be answered yet for want of a second factor: "sign_in_again"
    (they have one but this session did not use it), "enrol" (they have none), or None."""
    if not mfa_requested(checked) or mfa.AMR_MFA in (getattr(principal, "amr", "") or "").split():
        return None
    return "sign_in_again" if mfa.has_second_factor(principal.user.id) else "enrol"


def second_factor_decision(checked: Validated, principal):
    """The answer to a request that needs a second factor this session did not use: sign in again
    (both factors), or set one up first; with prompt=none, interaction_required. None when fine."""
    missing = _second_factor_missing(checked, principal)
    if missing is None:
        return None
    params = checked.params
    if "none" in _prompts(params):
        return error_decision(InteractionRequiredError(
            description="a second factor is required", redirect_uri=checked.reply.redirect_uri), params)
    if missing == "sign_in_again":
        return NeedsLogin(authorization_params(params, drop_prompt="login"), "mfa")
    return NeedsSecondFactor(authorization_params(params, drop_prompt="login"),
                             checked.grant.request.client.row.client_name)


def needs_verified_email(checked: Validated, principal) -> bool:
    """Whether the client requires a verified address (require_verified_email) the user has not."""
    return bool(checked.grant.request.client.row.require_verified_email and not principal.user.email_verified)


def remembers_consent(checked: Validated) -> bool:
    """Whether remembered consent may answer this request unasked: not when the answer may reach
    another app than the client (a private-use scheme or any-port loopback URI, for a public
    client or an answer carrying tokens: OAuthClient.may_answer_another_app): any app on the
    device could send the request with the client_id (and a PKCE pair of its own), and get the
    client's grant without the person seeing anything (RFC 8252 section 8.6; RFC 6749 section 10.2)."""
    request = checked.grant.request
    return not request.client.may_answer_another_app(checked.reply.redirect_uri, request.payload.response_type)


def needs_consent(checked: Validated, principal) -> bool:
    """Whether to ask: prompt=consent asks whatever the client (OpenID Connect Core 3.1.2.1); else
    a client with require_consent asks unless the user's remembered consent covers the scopes
    (and may answer this request: remembers_consent)."""
    if "consent" in _prompts(checked.params):
        return True
    client = checked.grant.request.client.row
    if not client.require_consent:
        return False
    if not remembers_consent(checked):
        return True
    return not consent.has_consent(principal.user.id, client.client_id, checked.grant.request.scope.split())


def _parameter_error(params: AuthorizationParams, redirect_uri: str | None):
    """A repeated, NUL-carrying or malformed parameter (parameters.py): an error for the client's
    validated redirect URI, or for the page when client_id or redirect_uri itself is in doubt."""
    error = parameter_error(params.args, params.form)
    if error is None:
        return None
    if {"client_id", "redirect_uri"} & set(repeated_names(params.args, params.form)):
        redirect_uri = None
    elif redirect_uri is None:  # Authlib refused the repetition itself, before checking the redirect URI
        client = query_client(params.values.get("client_id"))
        reply = reply_to(client.row if client is not None else None, params.values)
        redirect_uri = reply.redirect_uri if reply is not None else None
    error.redirect_uri = redirect_uri
    return error


def _request_object_error(params: AuthorizationParams, redirect_uri: str):
    """OpenID Connect Core 6.1 and 6.2: an OP that does not take request objects (discovery says
    so) MUST refuse `request` and `request_uri`, not answer the unsigned parameters beside them.
    `registration` (7.2.1: a Self-Issued OP's, which this is not) is refused as 3.1.2.6 says
    (registration_not_supported): ignored, the client metadata it carries was not applied. And a `max_age` that is not a number of seconds is refused, not ignored: ignoring it would
    answer without the fresh sign-in the client asked for; so is a prompt value not supported (_unsupported_prompt)."""
    values = params.values  # a parameter sent without a value is as if omitted (RFC 6749, 3.1)
    if values.get("request"):
        return RequestNotSupportedError(redirect_uri=redirect_uri)
    if values.get("request_uri"):
        return RequestURINotSupportedError(redirect_uri=redirect_uri)
    if values.get("registration"):
        return RegistrationNotSupportedError(redirect_uri=redirect_uri)
    if values.get("max_age") and not MAX_AGE.fullmatch(values["max_age"]):
        return InvalidRequestError("max_age must be a whole number of seconds", redirect_uri=redirect_uri)
    unsupported = _unsupported_prompt(params)
    if unsupported is not None:
        return InvalidRequestError(f"prompt value not supported: {unsupported}", redirect_uri=redirect_uri)
    return None


def _unsupported_response_type(response_type: str | None, redirect_uri: str | None) -> OAuth2Error:
    """The error for a response type no grant serves, said as a sentence. Authlib 1.9 builds its
    UnsupportedResponseTypeError with the arguments swapped: the client was told the bare value
    (`error_description=token`), the page "response_type=The response type ... is not supported"."""
    if not response_type:
        # RFC 6749 4.1.2.1: a required parameter missing is invalid_request (Authlib: unsupported)
        return InvalidRequestError("response_type is required", redirect_uri=redirect_uri)
    return OAuth2Error(f"response_type {response_type} is not supported", error="unsupported_response_type",
                       redirect_uri=redirect_uri)


def validate(principal, params: AuthorizationParams):
    """The Validated request, or the decision that answers an invalid one."""
    if has_nul(params.args, params.form):
        # before any lookup (a nonce's, a login_hint's: PostgreSQL refuses NUL in a text), answered
        # as a repeated parameter is: to the client when its redirect URI is known (web/inputs.py
        # leaves this endpoint's NUL to it)
        return error_decision(_parameter_error(params, None), params)
    user = principal.user if principal.is_authenticated else None
    try:  # building the request refuses plain HTTP (InsecureTransportError, an OAuth2Error)
        oauth_request = ParamsRequest(request, params.method, params.args, params.form, params.values)
        grant = authorization_server().get_consent_grant(oauth_request, end_user=user)
    except OAuth2Error as error:
        if error.error == "unsupported_response_type":
            error = _unsupported_response_type(params.values.get("response_type"), error.redirect_uri)
        return error_decision(_parameter_error(params, error.redirect_uri) or _refused_before_sign_in(error, params)
                              or error, params)
    reply = reply_to(grant.request.client.row, params.values)
    error = _parameter_error(params, reply.redirect_uri if reply is not None else None)
    if error is None and reply is None:  # Authlib checked it already; never answer an unchecked URI
        error = InvalidRequestError("redirect_uri is not registered for this client")
    hinted_subject = None
    if error is None:
        error, hinted_subject = _own_checks(params, reply.redirect_uri)
    if error is not None:
        return error_decision(error, params)
    return Validated(grant, reply, params, hinted_subject, _claimed_subject(params))


def _own_checks(params: AuthorizationParams, redirect_uri: str) -> tuple[OAuth2Error | None, str | None]:
    """This module's checks of a request whose client and redirect URI are validated: the error
    that refuses it (_request_object_error, an id_token_hint this server did not issue), else
    None and the `sub` of its id_token_hint, if any."""
    error = _request_object_error(params, redirect_uri)
    if error is not None or not params.values.get("id_token_hint"):  # sent empty: as if omitted
        return error, None
    try:
        return None, tokens.verify_id_token_hint(params.values["id_token_hint"]).get("sub")
    except tokens.InvalidToken:
        return InvalidRequestError("id_token_hint is not an ID token this server issued", redirect_uri=redirect_uri), None


def _refused_before_sign_in(error: OAuth2Error, params: AuthorizationParams) -> OAuth2Error | None:
    """Authlib answers prompt=none from someone signed out (login_required) once it has validated
    the client and the redirect URI, before _own_checks: the request's own error comes first, as
    for someone signed in, or a client whose silent sign-in it refuses (a request object, a
    max_age or id_token_hint it cannot take) sends the person to sign in for a request refused after."""
    if not isinstance(error, LoginRequiredError) or not error.redirect_uri:
        return None
    return _own_checks(params, error.redirect_uri)[0]


def grant_response(checked: Validated, principal):
    """Issue the code / tokens for a signed-in, consenting user."""
    context = grant_context()
    context.auth_time, context.sid = principal.auth_time, principal.public_sid  # never the cookie's sid
    context.amr = principal.amr
    try:
        sent = checked.grant.create_authorization_response(checked.reply.redirect_uri, principal.user)
    except OAuth2Error as error:
        error.redirect_uri = error.redirect_uri or checked.reply.redirect_uri
        return error_decision(error, checked.params)
    count_issued()  # a front channel's access token (implicit, hybrid), stored with its code or jti
    # the clients to tell when this session ends (back-channel and front-channel logout)
    logout.remember_session_client(principal.public_sid, checked.grant.request.client.row)
    return Respond(checked.reply, with_issuer(sent))


def _person_needed(checked: Validated, principal, signed_in_now: bool = False):
    """What the person must do before a valid request is answered, or consented to: sign in
    (again), use or set up a second factor, verify their address; None when nothing. One place
    for the authorization endpoint and the consent page, so neither is a way around the other.
    `signed_in_now`: the person has just signed in for this request (the sign-in resumes it)."""
    params = checked.params
    prompts = _prompts(params)
    reason = _login_reason(principal, checked)
    if reason == "another_user" and signed_in_now:
        # OpenID Connect Core 3.1.2.1, 3.1.2.2: the user the hint (or claims) names was not the one
        # signed in by the request; answered, not sent back to the same sign-in page again
        return error_decision(LoginRequiredError(description="the user signed in is not the one the request names",
                                                 redirect_uri=checked.reply.redirect_uri), params)
    if reason is not None:
        if "none" in prompts:
            return error_decision(LoginRequiredError(redirect_uri=checked.reply.redirect_uri), params)
        return NeedsLogin(authorization_params(params, drop_prompt="login"), reason)
    second_factor = second_factor_decision(checked, principal)
    if second_factor is not None:
        return second_factor
    if needs_verified_email(checked, principal):
        if "none" in prompts:
            return error_decision(InteractionRequiredError(redirect_uri=checked.reply.redirect_uri), params)
        return NeedsVerifiedEmail(authorization_params(params))
    return None


def _resumable(decision, checked: Validated):
    """The decision that sends the person to a page first, if that page can resume the request
    after it; else invalid_request to the client, with its state: a pending request longer than
    the page's returnUrl takes (RESUME_URL_MAX_LENGTH) was lost after the sign-in, the person
    left on the home page and the client never answered."""
    if not isinstance(decision, (NeedsLogin, NeedsSecondFactor, NeedsVerifiedEmail)) or \
            len(AUTHORIZE_PATH + "?" + urlencode(decision.params)) <= RESUME_URL_MAX_LENGTH:
        return decision
    return error_decision(InvalidRequestError(f"the request is too long to resume after signing in (over "
                                              f"{RESUME_URL_MAX_LENGTH} characters)", redirect_uri=checked.reply.redirect_uri),
                          checked.params)


def _validated_for(principal, params: AuthorizationParams, signed_in_now: bool = False):
    """The Validated request once the person has nothing more to do for it, or the decision that
    answers it first (an invalid request; sign in again, a second factor, verify the address)."""
    checked = validate(principal, params)
    if not isinstance(checked, Validated):
        return checked
    needed = _person_needed(checked, principal, signed_in_now)
    return checked if needed is None else _resumable(needed, checked)


def authorize(principal, params: AuthorizationParams, *, signed_in_now: bool = False):
    """Decide the answer to an authorization request for this principal (signed in or not);
    `signed_in_now` when a sign-in for this request has just finished and resumes it."""
    checked = _validated_for(principal, params, signed_in_now)
    if not isinstance(checked, Validated):
        return checked
    if needs_consent(checked, principal):
        if "none" in _prompts(params):
            return error_decision(ConsentRequiredError(redirect_uri=checked.reply.redirect_uri), params)
        return NeedsConsent(authorization_params(params, drop_prompt="consent"))
    return grant_response(checked, principal)


def consent_prompt(principal, params: AuthorizationParams):
    """The ConsentPrompt for a valid request, or the decision that answers an invalid one (or
    one the person must first do something for, as at the authorization endpoint)."""
    checked = _validated_for(principal, params)
    if isinstance(checked, (NeedsLogin, NeedsSecondFactor, NeedsVerifiedEmail)):
        return _consent_still_asked(checked)
    if not isinstance(checked, Validated):
        return checked
    client = checked.grant.request.client.row
    return ConsentPrompt(checked, client.client_name, checked.grant.request.scope.split(), remembers_consent(checked))


def _consent_still_asked(needed):
    """What the person must do first (max_age ran out while the page was open, the address was
    changed in another tab), resuming the request with prompt=consent: the page's question is
    asked again afterwards, so neither Deny nor a client without require_consent (whose consent
    page only prompt=consent asked for) lets the request be answered unasked."""
    prompts = (needed.params.get("prompt") or "").split()
    return replace(needed, params={**needed.params, "prompt": " ".join([*prompts, "consent"])}) \
        if "consent" not in prompts else needed


def answer_consent(prompt: ConsentPrompt, principal, *, allow: bool, remember: bool):
    """The user's answer: access_denied to the client, or the grant (remembered if asked)."""
    checked = prompt.request
    if not allow:
        return error_decision(AccessDeniedError(redirect_uri=checked.reply.redirect_uri), checked.params)
    if remember and prompt.rememberable:
        consent.remember_consent(principal.user.id, checked.grant.request.client.row.client_id, prompt.scopes)
    return grant_response(checked, principal)

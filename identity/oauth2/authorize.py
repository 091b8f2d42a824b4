"""The authorization endpoint's decisions: validate, sign in if needed, ask consent if needed, respond.

Shared by /connect/authorize and /consent, which both carry the authorization request.
"""

from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import redirect, render_template, request, url_for

from ..clock import now
from ..services import consent
from .context import grant_context
from .parameters import parameter_error, repeated_names
from .response_modes import respond
from .server import authorization_server, query_client

DEFAULT_MODES = {"code": "query"}


def validate_request(principal):
    """Return Authlib's grant for this authorization request (raises OAuth2Error)."""
    user = principal.user if principal.is_authenticated else None
    return authorization_server().get_consent_grant(end_user=user)


def error_response(error: OAuth2Error):
    """Send an error to the client when its redirect URI is validated; otherwise show a page, never redirect."""
    redirect_uri = getattr(error, "redirect_uri", None)
    if not redirect_uri:
        return render_template("error.html", status=400, title="This sign-in request is not valid",
                               detail=error.get_error_description() or error.error), 400
    params = list(error.get_body())
    state = request.values.get("state")
    if state and not any(k == "state" for k, _ in params):
        params.append(("state", state))
    response_type = request.values.get("response_type", "")
    default = "query" if response_type == "code" else "fragment"
    mode = request.values.get("response_mode") if request.values.get("response_mode") in ("query", "fragment", "form_post") else default
    if mode == "query" and response_type != "code":
        mode = "fragment"
    return respond(redirect_uri, params, mode)


def _prompts() -> list[str]:
    return (request.values.get("prompt") or "").split()


def _max_age_exceeded(principal) -> bool:
    raw = request.values.get("max_age")
    if raw is None or not principal.is_authenticated:
        return False
    try:
        max_age = int(raw)
    except ValueError:
        return False
    return now() - principal.auth_time > max_age


def authorization_params(drop_prompt: str | None = None) -> dict:
    params = {k: v for k, v in request.values.items(multi=False) if k not in ("csrf_token", "decision", "remember")}
    if drop_prompt and "prompt" in params:
        remaining = [p for p in params["prompt"].split() if p != drop_prompt]
        if remaining:
            params["prompt"] = " ".join(remaining)
        else:
            del params["prompt"]
    return params


def login_redirect():
    """Send the browser to sign in, then back to this request (without prompt=login, so it is not asked again)."""
    return_url = url_for("connect.authorize") + "?" + urlencode(authorization_params(drop_prompt="login"))
    return redirect(url_for("account.login", returnUrl=return_url))


def needs_login(principal) -> bool:
    return not principal.is_authenticated or "login" in _prompts() or _max_age_exceeded(principal)


def needs_consent(grant, principal) -> bool:
    client = grant.request.client.row
    if not client.require_consent:
        return False
    if "consent" in _prompts():
        return True
    return not consent.has_consent(principal.user.id, client.client_id, grant.request.scope.split())


def grant_response(grant, redirect_uri: str, principal):
    """Issue the code / tokens for a signed-in, consenting user."""
    context = grant_context()
    context.auth_time, context.sid = principal.auth_time, principal.public_sid  # never the cookie's sid
    try:
        return grant.create_authorization_response(redirect_uri, principal.user)
    except OAuth2Error as error:
        error.redirect_uri = error.redirect_uri or redirect_uri
        return error_response(error)


def deny_response(grant, redirect_uri: str):
    return error_response(AccessDeniedError(redirect_uri=redirect_uri))


def _parameter_error(redirect_uri):
    """A repeated, NUL-carrying or malformed parameter (parameters.py): an error for the client's
    validated redirect URI, or for the page when client_id or redirect_uri itself is in doubt."""
    args, form = request.args, request.form
    error = parameter_error(args, form)
    if error is None:
        return None
    if {"client_id", "redirect_uri"} & set(repeated_names(args, form)):
        redirect_uri = None
    elif redirect_uri is None:  # Authlib refused the repetition itself, before checking the redirect URI
        client = query_client(request.values.get("client_id"))
        requested = request.values.get("redirect_uri")
        redirect_uri = requested if client is not None and requested and client.check_redirect_uri(requested) else None
    error.redirect_uri = redirect_uri
    return error


def handle_authorize(principal):
    """Run the authorization endpoint for the current request."""
    try:
        grant = validate_request(principal)
    except OAuth2Error as error:
        return error_response(_parameter_error(error.redirect_uri) or error)
    redirect_uri = grant.redirect_uri or grant.request.payload.redirect_uri
    error = _parameter_error(redirect_uri)
    if error is not None:
        return error_response(error)
    prompts = _prompts()
    if needs_login(principal):
        if "none" in prompts:
            return error_response(LoginRequiredError(redirect_uri=redirect_uri))
        return login_redirect()
    if needs_consent(grant, principal):
        if "none" in prompts:
            return error_response(ConsentRequiredError(redirect_uri=redirect_uri))
        return redirect(url_for("consent.consent", **authorization_params(drop_prompt="consent")))
    return grant_response(grant, redirect_uri, principal)

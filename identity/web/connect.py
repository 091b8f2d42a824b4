"""The protocol endpoints under /connect (CSRF does not apply: clients, not our forms, call them)."""

from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, current_app, jsonify, make_response, render_template, request, url_for
from flask_login import current_user

from ..plumbing.login_session import continues_session, end_session_principal, sign_out
from ..extensions import csrf, limiter, sensitive_limit
from .account import STALE_SIGN_OUT
from .forms import ConfirmForm
from ..plumbing.headers import allow_form_target
from ..oauth2 import authorization_server
from ..oauth2 import end_session
from ..oauth2.authorize import AUTHORIZE_PATH, AuthorizationParams, authorize as decide_authorization
from ..oauth2.requests import is_form_post
from ..oauth2.resource import current_token, require_oauth
from ..services.id_tokens import user_claims
from .decisions import render, render_signed_out
from .return_urls import pending_client

bp = Blueprint("connect", __name__, url_prefix="/connect")
csrf.exempt(bp)

LOGOUT_FIELDS = ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")
POSTED_AGAIN = "posted_again"  # marks the end-session POST that this server's own page made


@bp.route("/authorize", methods=["GET", "POST"])
def authorize():
    """Start or continue an authorization request. A client's auto-submitting form is a
    cross-site POST, which carries no SameSite=Lax cookie: posted again by this site's page first
    (as the end-session endpoint does), so a signed-in person is found signed in."""
    if _posted_without_cookies() and _posted_once_each():
        fields = request.form.to_dict()
        _, redirect_uri = pending_client(AUTHORIZE_PATH + "?" + urlencode(request.args.to_dict() | fields))
        return _post_again(redirect_uri, fields, action=request.script_root + request.full_path.rstrip("?"),
                           heading="Continuing…")
    return render(decide_authorization(current_user, AuthorizationParams.from_request()))


def _posted_once_each() -> bool:
    """Whether each of the POST's fields comes once: a field given twice is answered as it is
    (invalid_request), not posted again with one of its values."""
    return all(len(values) == 1 for values in request.form.listvalues())


def not_a_password_grant() -> bool:
    """Exempt every grant but `password` from the sign-in limit: only it checks a user's password.

    A form body is read the way the token endpoint reads it (kept, so it is parsed again there);
    any other body through werkzeug's parser, as Authlib's own request reads it. The query counts
    too: the token endpoint reads its parameters from the query and the body together, so a
    `grant_type=password` in the query is a password grant like one in the body.
    """
    if ("grant_type", "password") in request.args.items(multi=True):
        return False
    if is_form_post(request.environ):
        body = request.get_data(cache=True).decode("utf-8", "replace")
        return ("grant_type", "password") not in parse_qsl(body, keep_blank_values=True)
    return request.values.get("grant_type") != "password"


def client_authentication_failed(response) -> bool:
    """A 401 here is a failed client authentication (invalid_client), which cost an Argon2
    verification as a wrong password does (security.md), whether or not the client exists."""
    return response.status_code == 401


# Failed client authentications at the three endpoints that check client secrets count together
# toward the sign-in form's limit (per client IP), on top of the default: each cost an Argon2
# verification. Only failures count, so a client that authenticates is held to the default alone.
limit_failed_client_authentication = limiter.shared_limit(
    sensitive_limit, scope="client_authentication", override_defaults=False, deduct_when=client_authentication_failed)


@bp.post("/token")
# the password grant counts toward the sign-in form's limit (per client IP), on top of the default
@limiter.limit(sensitive_limit, override_defaults=False, exempt_when=not_a_password_grant)
@limit_failed_client_authentication
def token():
    """Exchange a grant for tokens."""
    return authorization_server().create_token_response()


@bp.post("/revocation")
@limit_failed_client_authentication
def revocation():
    """Revoke an access or refresh token (RFC 7009)."""
    return authorization_server().create_endpoint_response("revocation")


@bp.post("/introspect")
@limit_failed_client_authentication
def introspect():
    """Describe a token to the client it was issued to (RFC 7662)."""
    return authorization_server().create_endpoint_response("introspection")


@bp.route("/userinfo", methods=["GET", "POST"])
@require_oauth("openid", user_required=True, form_token=True)
def userinfo():
    """Return the claims the token's scopes release about its user."""
    return jsonify(user_claims(current_token.user, current_token.scope))


@bp.route("/endsession", methods=["GET", "POST"])
def endsession():
    """RP-initiated logout: check the hint and the return address, confirm if needed, sign out."""
    outcome = end_session.check_end_session_request(request.args, request.form, end_session_principal())
    if outcome.error:
        return render_template("error.html", status=400, title="This sign-out request is not valid", detail=outcome.error), 400
    if _posted_without_cookies():
        return _post_again(outcome.redirect_uri)
    if outcome.needs_confirmation or continues_session():
        allow_form_target(outcome.redirect_uri)
        form = ConfirmForm()
        if not form.validate_on_submit():
            hidden = {k: v for k, v in request.values.items() if k in LOGOUT_FIELDS}
            # this page's own form, rendered before the browser signed in again (another tab)
            notice = STALE_SIGN_OUT if request.method == "POST" and "csrf_token" in request.form else None
            return render_template("account/logout.html", form=form, hidden=hidden, notice=notice,
                                   action=url_for("connect.endsession"))
    return render_signed_out(end_session.finish(outcome), sign_out(current_user, how="end_session"),
                             client_name=outcome.client_name)


def _posted_without_cookies() -> bool:
    """A POST that carries neither the session nor the remember-me cookie, and that this server's
    page has not posted again already. A client's auto-submitting logout form is a cross-site POST,
    and browsers send no SameSite=Lax cookie with one: the person may be signed in all the same."""
    names = (current_app.config["SESSION_COOKIE_NAME"], current_app.config["REMEMBER_COOKIE_NAME"])
    return request.method == "POST" and not request.form.get(POSTED_AGAIN) and not any(n in request.cookies for n in names)


def _post_again(redirect_uri: str | None, fields: dict | None = None, action: str | None = None,
                heading: str = "Signing you out…"):
    """The end-session fields (or `fields`), posted again to this endpoint (or `action`) by a page
    of this site: a same-site POST, which carries the cookies (and may end at the client, so its
    origin is a form target)."""
    allow_form_target(redirect_uri)
    if fields is None:
        fields = {k: v for k, v in request.values.items() if k in LOGOUT_FIELDS}
    params = fields | {POSTED_AGAIN: "1"}
    response = make_response(render_template("form_post.html", action=action or url_for("connect.endsession"),
                                             params=params, heading=heading))
    response.headers["Cache-Control"] = "no-store"
    return response

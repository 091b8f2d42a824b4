"""Sign-in, sign-out and the change-password page (cookie sessions)."""

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, fresh_login_required

from ..plumbing.login_session import (account_login_name, continues_session, hold_for_second_factor, renew_cookie,
                                      sign_in, sign_out, signed_out_if_removed, untold_frontchannel_uris)
from ..errors import AccountLocked, AlreadyDone, SecondFactorRequired, ValidationFailed
from ..extensions import csrf, limiter, sensitive_limit
from .forms import ChangePasswordForm, ConfirmForm, LoginForm
from .second_factor import second_factor_fields, second_factor_refusal
from ..services import accounts, browser_sessions, metrics, mfa
from ..plumbing.headers import allow_form_target
from ..oauth2.authorize import AuthorizationParams, authorize
from ..oauth2.decisions import Respond
from .decisions import render, render_signed_in_over, render_signed_out
from .return_urls import pending_authorization, pending_client, pending_client_id, pending_query, safe_return_url

bp = Blueprint("account", __name__, url_prefix="/account")

STALE_SIGN_OUT = ("That sign-out form had expired: it was on a page shown before this browser last signed in (in "
                  "another tab, perhaps), or too long ago. Nothing was ended yet: to sign out now, press Sign out.")
SIGN_IN_FAILED = "The user name or password is incorrect, or the account is temporarily locked. Try again later."


def _return_url() -> str | None:
    return safe_return_url(request.args.get("returnUrl") or request.args.get("next"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(sensitive_limit, methods=["POST"])
def login():
    """Sign in with user name (or email) and password, then resume the pending request."""
    return_url = _return_url()
    form = LoginForm()
    error = None
    if request.method != "POST" and not form.username.data:  # GET, and HEAD as GET
        form.username.data = pending_authorization(return_url).get("login_hint", "")
    if form.validate_on_submit():
        result = accounts.sign_in(form.username.data, form.password.data,
                                  client_id=pending_client_id(return_url))
        by_email = result.user is not None and accounts.named_by_email(form.username.data, result.user)
        if result.user is not None and result.needs_second_factor:
            hold_for_second_factor(result, remember=form.remember.data, by_email=by_email)
            return redirect(url_for("mfa.second_step", returnUrl=return_url) if return_url
                            else url_for("mfa.second_step"))
        if result.user is not None:
            principal = sign_in(result, remember=form.remember.data, by_email=by_email)
            return _after_sign_in(principal, return_url)
        error = SIGN_IN_FAILED  # announced above the form, and tied to the password field (focused)
    elif request.method == "POST" and not form.errors.get("csrf_token"):
        error = "Enter your user name and password."
    elif form.errors.get("csrf_token"):
        error = "The form expired. Please try again."
    client_name, redirect_uri = pending_client(return_url)
    allow_form_target(redirect_uri)  # the sign-in post ends at the client after the redirects
    status = 200 if error is None else 400
    return render_template("account/login.html", form=form, error=error, client_name=client_name,
                           password_error=error if error == SIGN_IN_FAILED else None, return_url=return_url), status


def _after_sign_in(principal, return_url: str | None):
    """Answer the pending authorization request here when it needs nothing more from the person
    (no consent page, no second sign-in): the redirect back to /connect/authorize is saved, and
    the answer is the one that endpoint would give, decided by the same code (oauth2/authorize.py).
    Anything else goes back through the return URL as before."""
    untold = untold_frontchannel_uris()  # the apps of another user whose session this sign-in ended
    query = pending_query(return_url)
    if query is not None:
        params = AuthorizationParams.from_query(query)
        # /connect/authorize refuses a NUL before it decides (inputs.py); leave that answer to it
        if not any("\x00" in name + value for name, value in params.args.items(multi=True)):
            decision = authorize(principal, params, signed_in_now=True)
            if isinstance(decision, Respond):
                return render_signed_in_over(decision, untold, principal.user.username) if untold else render(decision)
    if untold:
        return render_signed_in_over(return_url or url_for("home.index"), untold, principal.user.username)
    return redirect(return_url or url_for("home.index"))


# Exempt from CSRFProtect's app-wide check, whose HTTPS Referer test refuses every post from a
# page that sends no Referer: the verification and reset pages (their URL holds a token) carry
# the nav's sign-out form too. The form's own CSRF token is still checked (validate_on_submit),
# as the end-session endpoint checks its confirmation form.
@csrf.exempt
@bp.route("/logout", methods=["GET", "POST"])
def logout():
    """Ask before signing out (GET); sign out and end the session (POST)."""
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        return render_signed_out(None, sign_out(current_user))
    if request.method == "POST" and not current_user.is_authenticated and not continues_session():
        # the form of a page shown before this browser signed out (in another tab): nothing to end
        return render_signed_out(None, [])
    notice = STALE_SIGN_OUT if request.method == "POST" else None
    status = 400 if request.method == "POST" else 200
    return render_template("account/logout.html", form=form, hidden={}, notice=notice), status


def password_check_limit() -> str:
    return current_app.config["RATELIMIT_PASSWORD_CHECK"]


# The meter's words for the policy's verdict: 0 too short, 1 refused for another reason, 3-4 accepted.
STRONG_GUESSES_LOG10 = 14


@bp.route("/password/check", methods=["POST"])
@fresh_login_required
@limiter.limit(password_check_limit)
def password_check():
    """Judge a candidate new password for the page's strength meter.

    The answer is the policy the form applies on submit, for the same user, so the meter cannot
    promise what the form then refuses. CSRF-protected like every form post (X-CSRFToken header).
    """
    new_password = request.form.get("new_password", "")
    current_password = request.form.get("current_password") or None
    verdict = accounts.new_password_verdict(current_user.user.id, new_password, current_password)
    if not verdict.acceptable:
        short = verdict.problems[0].startswith("Use at least")
        strength, label = (0, "Too short") if short else (1, "Not accepted")
    elif (verdict.guesses_log10 or 0) >= STRONG_GUESSES_LOG10:
        strength, label = 4, "Strong"
    else:
        strength, label = 3, "Good"
    response = jsonify(acceptable=verdict.acceptable, problems=verdict.problems, strength=strength, label=label)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/password", methods=["GET", "POST"])
@fresh_login_required
@limiter.limit(sensitive_limit, methods=["POST"])
@signed_out_if_removed
def password():
    """Change the signed-in user's password; other sessions are signed out, and this one gets a
    new cookie sid (copies of its old cookie, stolen or planted, sign nobody in)."""
    form = ChangePasswordForm()
    errors: dict[str, list[str]] = {}
    changed = False
    status = 200
    recent_mfa = mfa.recently_verified(current_user.amr, current_user.auth_time)
    factor = mfa.factor_to_prove(current_user.user.id, recent_mfa=recent_mfa)
    if form.validate_on_submit():
        renewed_sid = browser_sessions.new_sid()
        try:
            accounts.change_password(current_user.user.id, form.current_password.data, form.new_password.data,
                                     form.confirm_password.data, keep_sid=current_user.sid, renewed_sid=renewed_sid,
                                     otp=form.otp.data or None, recent_mfa=recent_mfa)
            renew_cookie(current_user._get_current_object(), renewed_sid)
            metrics.count_password_change("page")
            changed = True
            form = ChangePasswordForm(formdata=None)
        except AlreadyDone:  # this form sent again: its first copy changed the password
            changed = True
            form = ChangePasswordForm(formdata=None)
        except SecondFactorRequired:
            factor, errors = second_factor_refusal(current_user.user.id, recent_mfa=recent_mfa)
            status = 403
        except ValidationFailed as err:
            errors = err.errors
        except AccountLocked as err:
            errors = {"current_password": [err.page_message]}
    if request.method == "POST" and not changed and status == 200:
        status = 400
    return render_template("account/password.html", form=form, errors=errors, changed=changed,
                           login_name=account_login_name(current_user.user),
                           **second_factor_fields(factor), min_length=current_app.config["PASSWORD_MIN_LENGTH"]), status

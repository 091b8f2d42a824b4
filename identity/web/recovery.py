"""Forgot password and the reset page (the one-time link mailed by services/recovery.py)."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from ..errors import AlreadyDone, InvalidLink, ValidationFailed
from ..extensions import csrf, limiter, link_refused, sensitive_limit
from .errors import NO_COOKIE, kept_no_cookie
from .forms import ForgotPasswordForm, ResetPasswordForm
from ..services import recovery
from .return_urls import pending_client_id, safe_return_url

bp = Blueprint("recovery", __name__, url_prefix="/account")

NO_REFERRER = "no-referrer"
PASSWORD_RESET_DONE = "Your password was changed, and every other sign-in ended. Sign in with your new password."

INVALID_LINK = {
    "expired": "This link has expired.",
    "used": "This link was already used, or a newer one was sent.",
    "superseded": "This link was sent to an address the account no longer has.",
    "unknown": "This link is not valid. Check that you opened the whole link from the message.",
}


def _return_url() -> str | None:
    return safe_return_url(request.args.get("returnUrl"))


def reset_ip_limit() -> str:
    return current_app.config["RATELIMIT_PASSWORD_RESET"]


def reset_account_limit() -> str:
    return current_app.config["RATELIMIT_PASSWORD_RESET_ACCOUNT"]


def target_account() -> str:
    """The rate-limit key of a forgot-password post: the account it names, whoever asks."""
    return "reset-account:" + recovery.account_key(request.form.get("username", ""))


@bp.route("/forgot-password", methods=["GET", "POST"])
@limiter.limit(reset_ip_limit, methods=["POST"])
@limiter.limit(reset_account_limit, key_func=target_account, methods=["POST"])
def forgot_password():
    """Ask for a reset link; the answer is the same whether or not the account exists."""
    return_url = _return_url()
    form = ForgotPasswordForm()
    error = None
    if request.method != "POST":  # GET, and HEAD as GET
        form.with_new_value()
    if form.validate_on_submit():
        recovery.request_reset(form.username.data, return_url=return_url, client_id=pending_client_id(return_url),
                               form_id=form.once.data or None)
        return render_template("account/forgot_password_sent.html", return_url=return_url)
    if form.errors.get("csrf_token"):
        error = "The form expired. Please try again."
    elif request.method == "POST":
        error = "Enter your user name or email address."
    status = 400 if error else 200
    return render_template("account/forgot_password.html", form=form, error=error, return_url=return_url), status


# The page's Referrer-Policy is no-referrer (the token is in its URL), so its form posts carry
# no Referer, which CSRFProtect's HTTPS check requires. The form's own CSRF token is still
# checked (ResetPasswordForm.validate_on_submit); and nobody can forge this post without the
# secret link anyway.
@csrf.exempt
@bp.route("/reset-password", methods=["GET", "POST"])
# a link that does not work too: it is audited (a row kept a year), and a link is a secret
@limiter.limit(sensitive_limit, deduct_when=link_refused)
def reset_password():
    """Set a new password through a reset link, then sign in (and resume a pending request)."""
    return_url = _return_url()
    form = ResetPasswordForm()
    errors: dict[str, list[str]] = {}
    if request.method != "POST":  # GET, and HEAD answered as GET (RFC 9110 section 9.3.2)
        form.token.data = request.args.get("token", "")
        return _reset_page(form, errors, return_url, 200)
    if form.validate_on_submit():
        try:
            recovery.reset_password(form.token.data, form.new_password.data, form.confirm_password.data,
                                    client_id=pending_client_id(return_url))
        except InvalidLink as err:
            return _invalid_link(err, return_url)
        except ValidationFailed as err:
            errors = err.errors
        except AlreadyDone:  # this form sent again: its first copy changed the password
            flash(PASSWORD_RESET_DONE, "success")
            return _no_referrer(redirect(url_for("account.login", returnUrl=return_url)))
        else:
            flash(PASSWORD_RESET_DONE, "success")
            return _no_referrer(redirect(url_for("account.login", returnUrl=return_url)))
    elif form.errors.get("csrf_token"):
        # a browser that kept no cookie fails the same way whenever it opens the link: say why
        errors = {"form": [NO_COOKIE if kept_no_cookie() else "The form expired. Please open the link again."]}
    else:
        errors = {"form": ["Enter the new password twice."]}
    return _reset_page(form, errors, return_url, 400)


def _reset_page(form, errors, return_url, status):
    """The form, under the account's user name for password managers; or, for a link that does not
    work (now), the page that says so."""
    try:
        # a HEAD (a mail scanner's, a preview's) is safe: it says whether the link works, audits nothing
        username = recovery.check_link(form.token.data, client_id=pending_client_id(return_url),
                                       audit_refusal=request.method != "HEAD")
    except InvalidLink as err:
        return _invalid_link(err, return_url)
    page = render_template("account/reset_password.html", form=form, errors=errors, return_url=return_url,
                           username=username, min_length=current_app.config["PASSWORD_MIN_LENGTH"],
                           referrer_policy=NO_REFERRER)
    return _no_referrer(current_app.make_response((page, status)))


def _invalid_link(err: InvalidLink, return_url: str | None):
    page = render_template("account/reset_link_invalid.html", message=INVALID_LINK.get(err.reason, INVALID_LINK["unknown"]),
                           return_url=return_url, referrer_policy=NO_REFERRER)
    return _no_referrer(current_app.make_response((page, 400)))


def _no_referrer(response):
    """The reset link's token is in this page's URL: no request from the page may carry it on
    (the header here, and the page's <meta name="referrer">, which browsers apply after it)."""
    response.headers["Referrer-Policy"] = NO_REFERRER
    return response

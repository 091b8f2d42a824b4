"""The email address pages: follow a verification link, see and change the address, and the
step a client that requires a verified address sends people to."""

from flask import Blueprint, current_app, make_response, render_template, request
from flask_login import current_user, fresh_login_required, login_required

from ..errors import AccountLocked, SecondFactorRequired, ValidationFailed
from ..extensions import client_network, limiter, link_refused, sensitive_limit
from ..plumbing.login_session import account_login_name, signed_out_if_removed
from .forms import ChangeEmailForm, SendLinkForm
from .second_factor import second_factor_fields, second_factor_refusal
from ..services import accounts, mfa, verification
from .return_urls import pending_client, safe_return_url

bp = Blueprint("email", __name__, url_prefix="/account")


def email_limit() -> str:
    return current_app.config["RATELIMIT_EMAIL"]


def signed_in_user() -> str:
    """RATELIMIT_EMAIL's key: the signed-in user these pages need, not the client address, which the
    users behind a carrier NAT share (as the local API counts it per token); the address without one."""
    if current_user.is_authenticated:
        return f"user:{current_user.user.id}"
    return client_network()


@bp.get("/verify-email")
# a link that does not work too: it is audited (a row kept a year), and a link is a secret
@limiter.limit(sensitive_limit, deduct_when=link_refused)
def verify():
    """Follow a verification link; the token is in the query, so the page sends no Referer.
    A HEAD (a mail scanner's) changes nothing: it only says whether the link would work."""
    if request.method == "HEAD":
        response = make_response("", 200 if verification.link_works(request.args.get("token")) else 400)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    result = verification.verify_email(request.args.get("token"))
    status = 200 if result.email else 400
    # the header, and the page's <meta name="referrer"> (which browsers apply after it)
    response = make_response(render_template("account/verify_email.html", result=result,
                                             referrer_policy="no-referrer"), status)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _send_link(form: SendLinkForm) -> tuple[str | None, str | None]:
    """Mail a link to the address that awaits one: (address, None) or (None, what went wrong).
    The form's value is the posted one; the page shown next gets a new one (OncePageForm.with_new_value)."""
    try:
        return verification.send_verification(current_user.user.id, form_id=form.once.data or None), None
    except verification.NothingToVerify:
        return None, "Your address is verified already."
    except verification.TooManyMails:
        return None, "Several links were sent in the last hour. Use the newest, or try again later."


@bp.route("/email", methods=["GET", "POST"])
@fresh_login_required
@limiter.shared_limit(email_limit, scope="email", key_func=signed_in_user, methods=["POST"])
@limiter.limit(sensitive_limit, methods=["POST"])
@signed_out_if_removed
def email():
    """Show the address and whether it is verified; send a link (`send`), or ask for a new address."""
    user = accounts.get_user(current_user.user.id)
    change_form = ChangeEmailForm(prefix="change")
    send_form = SendLinkForm(prefix="send")
    errors: dict[str, list[str]] = {}
    sent = notice = None
    status = 200
    recent_mfa = mfa.recently_verified(current_user.amr, current_user.auth_time)
    factor = mfa.factor_to_prove(user.id, recent_mfa=recent_mfa)
    if request.method == "POST":
        status = 400
        if "send-csrf_token" in request.form:
            if send_form.validate_on_submit():
                sent, notice = _send_link(send_form)
                status = 200 if sent else 400
            else:
                notice = "The form expired. Please try again."
        elif change_form.validate_on_submit():
            try:
                verification.request_email_change(user.id, change_form.email.data, change_form.current_password.data,
                                                  otp=change_form.otp.data or None, recent_mfa=recent_mfa, form=True)
                sent, status = change_form.email.data.strip(), 200
                change_form = ChangeEmailForm(prefix="change", formdata=None)
            except SecondFactorRequired:
                factor, errors = second_factor_refusal(user.id, recent_mfa=recent_mfa)
                status = 403
            except ValidationFailed as err:
                errors = err.errors
            except AccountLocked as err:
                errors = {"current_password": [err.page_message]}
            except verification.TooManyMails:
                notice = "Several links were sent in the last hour. Use the newest, or try again later."
        elif change_form.errors.get("csrf_token"):
            notice = "The form expired. Please try again."
        user = accounts.get_user(current_user.user.id)
        if user is None:  # removed as this request ran (`users remove`): signed out, as the next request would be
            return current_app.login_manager.unauthorized()
    return render_template("account/email.html", user=user, change_form=change_form, send_form=send_form.with_new_value(),
                           errors=errors, sent=sent, notice=notice, login_name=account_login_name(user),
                           **second_factor_fields(factor)), status


@bp.route("/email/required", methods=["GET", "POST"])
@login_required
@limiter.shared_limit(email_limit, scope="email", key_func=signed_in_user, methods=["POST"])
@signed_out_if_removed
def required():
    """The client asked for a verified address: offer to send the link, then go on (returnUrl)."""
    return_url = safe_return_url(request.args.get("returnUrl"))
    form = SendLinkForm()
    user = accounts.get_user(current_user.user.id)
    if user is None:  # removed since the session was loaded (`users remove`)
        return current_app.login_manager.unauthorized()
    sent = notice = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            sent, notice = _send_link(form)
        else:
            notice = "The form expired. Please try again."
        status = 200 if sent else 400
    client_name, _ = pending_client(return_url)
    return render_template("account/email_required.html", user=user, form=form.with_new_value(), sent=sent, notice=notice,
                           client_name=client_name, return_url=return_url), status

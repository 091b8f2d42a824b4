"""Second factors: the /account/mfa page and the second sign-in step /account/login/mfa."""

import hashlib

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, fresh_login_required

from ..plumbing.login_session import drop_pending, pending_sign_in, sign_in
from ..errors import AccountLocked, Conflict, NotFound, SecondFactorRequired, SignInTooOld, ValidationFailed
from ..extensions import limiter, sensitive_limit
from .forms import ConfirmForm, RegenerateCodesForm, RemoveFactorForm, SecondFactorForm, TotpConfirmForm
from ..plumbing.headers import allow_form_target
from ..services import accounts, mfa
from .account import _after_sign_in, _return_url
from .second_factor import NEEDS_CODE, NEEDS_RECENT_SIGN_IN, NEEDS_SIGN_IN, STEP_ENDED, factors_removed_meanwhile
from .return_urls import pending_client, pending_client_id, safe_return_url

bp = Blueprint("mfa", __name__, url_prefix="/account")

#: the enrolment this browser started: a digest of its secret (the cookie is signed, not secret).
#: The secret is the factor itself: shown to this browser only, and confirmed from it only.
TOTP_ENROLMENT = "totp_enrolment"
NOT_STARTED_HERE = "no authenticator app is being set up in this browser; start again"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _started_here(secret: str | None) -> bool:
    """Whether the enrolment in progress (its secret) is the one this browser started."""
    return secret is not None and session.get(TOTP_ENROLMENT) == _digest(secret)


PASSKEY_STEP = "Your second factor is a passkey: use it below."
CODE_FAILED = "That code is not right, or was used already, or the account is temporarily locked. Try again."


@bp.route("/login/mfa", methods=["GET", "POST"])
@limiter.limit(sensitive_limit, methods=["POST"])
def second_step():
    """Finish a sign-in with a code from the authenticator app or a recovery code."""
    return_url = _return_url()
    found = pending_sign_in()
    if found is None:  # never started, finished, or expired: start again from the password
        if request.method == "POST":  # a code typed on a page that outlived its sign-in: say why
            flash(STEP_ENDED, "info")
        drop_pending()
        return redirect(url_for("account.login", returnUrl=return_url) if return_url else url_for("account.login"))
    pending, user = found
    if (sent_back := factors_removed_meanwhile(user.id, return_url)) is not None:
        return sent_back
    form = SecondFactorForm()
    error = code_error = None
    codes = mfa.has_totp(user.id)  # else the factor is a passkey, which no code stands for
    if not codes and request.method == "POST":
        error = PASSKEY_STEP  # not counted toward the lockout: no code could be right
    elif form.validate_on_submit():
        result = accounts.finish_sign_in(user, form.code.data, pending_id=pending["id"],
                                         amr=pending.get("amr") or mfa.AMR_PASSWORD,
                                         client_id=pending_client_id(return_url))
        if result.user is not None:
            principal = sign_in(result, remember=pending.get("remember", False), by_email=pending.get("by_email") is True)
            return _after_sign_in(principal, return_url)
        if (sent_back := factors_removed_meanwhile(user.id, return_url)) is not None:  # as the code was checked
            return sent_back
        error = code_error = CODE_FAILED  # announced above the form, and tied to its field
    elif form.errors.get("csrf_token"):
        error = "The form expired. Please try again."
    elif request.method == "POST":
        error = "Enter the code from your authenticator app, or a recovery code."
    client_name, redirect_uri = pending_client(return_url)
    allow_form_target(redirect_uri)  # the post ends at the client after the redirects
    status = 200 if error is None else 400
    return render_template("account/login_mfa.html", form=form, error=error, code_error=code_error,
                           client_name=client_name, return_url=return_url, codes=codes, username=user.username), status


@bp.route("/mfa", methods=["GET", "POST"])
@fresh_login_required
@limiter.limit(sensitive_limit, methods=["POST"])
def factors():
    """Set up, inspect and remove second factors.

    A new factor (an app, new recovery codes) for a user who has one already needs a recent sign-in
    with it, or a code (regenerate): mfa.prove_second_factor, the password page's rule; a first
    one, a recent sign-in (mfa.prove_recent_sign_in)."""
    user_id = current_user.user.id
    recent_mfa = mfa.recently_verified(current_user.amr, current_user.auth_time)
    action = request.form.get("action") if request.method == "POST" else None
    # the page shows either the confirm form or the remove form, never both, so no field names clash
    forms = {"confirm": TotpConfirmForm(), "remove": RemoveFactorForm(), "start": ConfirmForm(),
             "regenerate": RegenerateCodesForm()}
    errors: dict[str, list[str]] = {}
    notice = None
    recovery_codes = None
    status = 200
    if action in forms and forms[action].validate_on_submit():
        try:
            if action == "start":
                mfa.prove_recent_sign_in(user_id, current_user.auth_time)
                mfa.prove_second_factor(user_id, None, recent_mfa=recent_mfa, purpose="add_factor")
                session[TOTP_ENROLMENT] = _digest(mfa.start_totp(user_id))
            elif action == "confirm":
                mfa.ensure_totp_unconfirmed(user_id)
                try:
                    mfa.prove_second_factor(user_id, None, recent_mfa=recent_mfa, purpose="add_factor")
                except SecondFactorRequired:  # this app, confirmed meanwhile (Confirm clicked twice)?
                    mfa.ensure_totp_unconfirmed(user_id)  # then say that, not "sign in again"
                    raise
                if not _started_here(mfa.pending_totp_secret(user_id)):
                    raise NotFound(NOT_STARTED_HERE)
                try:
                    recovery_codes = mfa.confirm_totp(user_id, forms["confirm"].code.data)
                except ValidationFailed:  # judged by a set-up another browser started since the look above?
                    if not _started_here(mfa.pending_totp_secret(user_id)):
                        raise NotFound(NOT_STARTED_HERE) from None
                    raise
                session.pop(TOTP_ENROLMENT, None)
                notice = "Your authenticator app is set up. Save your recovery codes now: they are shown only once."
            elif action == "regenerate":
                try:
                    mfa.prove_second_factor(user_id, forms["regenerate"].otp.data or None, recent_mfa=recent_mfa,
                                            purpose="regenerate_codes", given_by=current_user.sid)
                except SecondFactorRequired:
                    # the app removed as its code was checked: the page then draws no code field for
                    # the refusal's message, so say what a request after the removal is told
                    if not mfa.has_totp(user_id):
                        raise Conflict(mfa.NO_APP_FOR_CODES) from None
                    raise
                recovery_codes = mfa.regenerate_recovery_codes(user_id)
                notice = "New recovery codes: the old ones no longer work. Save these now: they are shown only once."
            elif action == "remove":
                form = forms["remove"]
                mfa.remove_totp(user_id, form.password.data, form.code.data, given_by=current_user.sid)
                notice = "Your authenticator app and recovery codes were removed."
                forms["remove"] = RemoveFactorForm(formdata=None)
        except SecondFactorRequired:
            errors = {"otp": [NEEDS_CODE]} if action == "regenerate" else {"form": [NEEDS_SIGN_IN]}
            status = 403
        except SignInTooOld:
            errors, status = {"form": [NEEDS_RECENT_SIGN_IN]}, 403
        except ValidationFailed as err:
            errors, status = err.errors, 400
        except AccountLocked as err:
            errors, status = {"form": [err.page_message]}, 400
        except (Conflict, NotFound) as err:
            errors, status = {"form": [str(err).capitalize() + "."]}, 409
    elif request.method == "POST":
        errors, status = {"form": ["The form expired or was incomplete. Please try again."]}, 400
    factors = mfa.user_factors(user_id)
    secret = mfa.pending_totp_secret(user_id) if factors.totp_pending else None
    if not _started_here(secret):
        secret = None  # another browser's enrolment: this one may start its own, which replaces it
    uri = mfa.provisioning_uri(secret, current_user.user.username) if secret else None
    # sent here by a client's "Two-step sign-in required" page: once a factor is set up, lead back
    # to the request (Back cannot: the pages between are answers to this page's posts)
    return_url = safe_return_url(request.args.get("returnUrl")) if factors.any else None
    return_client = pending_client(return_url)[0] if return_url else None
    return render_template("account/mfa.html", factors=factors, forms=forms, errors=errors, notice=notice,
                           recovery_codes=recovery_codes, secret=secret, qr_svg=mfa.qr_svg(uri) if uri else None,
                           action=action, needs_otp=not recent_mfa, return_url=return_url,
                           return_client=return_client), status

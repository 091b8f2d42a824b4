"""Passkeys on the web: register and remove them (account pages), sign in with one (login page).

The browser side is static/passkeys.js. Each ceremony is two requests: the options (JSON, the
challenge kept in the signed session cookie) and the answer, which pops the kept state, so a
challenge serves one answer. Every POST carries the CSRF token (the X-CSRFToken header for
fetches, the form field for the sign-in post; checked app-wide by CSRFProtect). Registration and removal need a fresh sign-in.
"""

from datetime import datetime, timezone

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, fresh_login_required

from ..plumbing.login_session import drop_pending, pending_sign_in, sign_in
from ..errors import AccountLocked, NotFound, PasskeyRefused, SecondFactorRequired, SignInTooOld
from ..extensions import limiter, sensitive_limit
from .forms import LoginForm, SecondFactorForm
from ..plumbing.headers import allow_form_target
from ..config.issuer import issuer
from ..services import mfa, passkeys
from .account import _after_sign_in, _return_url
from .errors import render_error
from .second_factor import NEEDS_RECENT_SIGN_IN, NEEDS_SIGN_IN, STEP_ENDED, factors_removed_meanwhile
from .return_urls import pending_client, pending_client_id

bp = Blueprint("passkeys", __name__, url_prefix="/account")

REGISTER_STATE = "passkey.register"
SIGN_IN_STATE = "passkey.sign_in"
SECOND_STEP_STATE = "passkey.second_step"


@bp.app_template_filter("passkey_date")
def _date(epoch: int | None) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%d %b %Y") if epoch else "-"


def _options(ceremony: passkeys.Ceremony, key: str):
    """Answer a ceremony's options, keeping its state for the one answer that follows."""
    session[key] = ceremony.state
    return current_app.response_class(ceremony.options, mimetype="application/json")


# --- the account's passkeys ------------------------------------------------------------------


@bp.app_template_global("current_user_passkeys")
def current_user_passkeys() -> list:
    """The signed-in user's passkeys, for the list on the factors page (templates/account/_passkeys.html)."""
    return passkeys.list_passkeys(current_user.user.id) if current_user.is_authenticated else []


@bp.get("/mfa/passkeys")
def index():
    """The passkeys are listed on the factors page."""
    return redirect(url_for("mfa.factors") + "#passkeys-title")


def _second_factor_missing():
    """A 403 unless the user may add a passkey: no second factor yet, or a sign-in that used one
    recently (mfa.prove_second_factor: the password page's rule); else None."""
    try:
        mfa.prove_second_factor(current_user.user.id, None, purpose="add_factor",
                                recent_mfa=mfa.recently_verified(current_user.amr, current_user.auth_time))
    except SecondFactorRequired:
        return jsonify(error=NEEDS_SIGN_IN), 403
    return None


@bp.post("/mfa/passkeys/options")
@fresh_login_required
def register_options():
    """Options for navigator.credentials.create(): this user, this issuer, their passkeys excluded.
    A first factor needs a recent sign-in (mfa.prove_recent_sign_in); the registration then needs
    the state these options keep."""
    try:
        mfa.prove_recent_sign_in(current_user.user.id, current_user.auth_time)
    except SignInTooOld:
        return jsonify(error=NEEDS_RECENT_SIGN_IN), 403
    refused = _second_factor_missing()
    if refused is not None:
        return refused
    return _options(passkeys.registration_options(current_user.user.id, issuer()), REGISTER_STATE)


def _json_object() -> dict:
    """The request's JSON body if it is an object, else {} (no JSON, a list, a string, a number,
    or nesting too deep for the json module, which raises RecursionError): the service then
    refuses it as it refuses any answer it cannot verify."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        return {}
    return body if isinstance(body, dict) else {}


@bp.post("/mfa/passkeys")
@fresh_login_required
@limiter.limit(sensitive_limit)
def register():
    """Verify and store the new passkey the browser created (JSON: credential, name)."""
    body = _json_object()
    state = session.pop(REGISTER_STATE, None)
    refused = _second_factor_missing()
    if refused is not None:
        if passkeys.registered_already(current_user.user.id, body.get("credential")):  # sent again
            return jsonify(error=passkeys.ALREADY_REGISTERED), 400
        return refused
    try:
        passkey = passkeys.register(current_user.user.id, issuer(), state, body.get("credential"),
                                    str(body.get("name") or ""))
    except PasskeyRefused as err:
        return jsonify(error=str(err)), 400
    flash(f"Passkey added: {passkey.name}.", "success")  # on the page passkeys.js reloads, as a removal says so
    return jsonify(id=passkey.id, name=passkey.name), 201


# an id past a 32-bit integer is no passkey's: a 404 from the route, not a value the database
# refuses (PostgreSQL's integer column) or cannot bind (SQLite, past 64 bits)
@bp.post("/mfa/passkeys/<int(max=2147483647):passkey_id>/remove")
@limiter.limit(sensitive_limit)  # a code may be tried here, as on /account/mfa
@fresh_login_required
def remove(passkey_id: int):
    """Remove one of the user's passkeys: a sign-in that used a second factor recently, or a code
    (`otp`), as for adding one. Else a session signed in with the password alone could take away
    the factor that guards the account's next sign-in."""
    try:
        passkeys.ensure_users_passkey(current_user.user.id, passkey_id)  # before a code is spent on it
    except NotFound:
        return _no_such_passkey()
    try:
        mfa.prove_second_factor(current_user.user.id, request.form.get("otp") or None, purpose="remove_factor",
                                given_by=f"{current_user.sid}:passkey:{passkey_id}", recent_mfa=mfa.recently_verified(current_user.amr, current_user.auth_time))
    except SecondFactorRequired:
        flash(NEEDS_SIGN_IN, "error")
        return redirect(url_for("mfa.factors")), 303
    except AccountLocked as err:
        flash(err.page_message, "error")
        return redirect(url_for("mfa.factors")), 303
    except NotFound:  # the user removed meanwhile (`users remove`), the passkey with her
        return _no_such_passkey()
    try:
        passkeys.remove_passkey(current_user.user.id, passkey_id)
    except NotFound:  # removed meanwhile
        return _no_such_passkey()
    flash("Passkey removed.", "success")
    return redirect(url_for("mfa.factors"))


def _no_such_passkey():
    """A stale form (removed in another tab) or another user's id: one answer for both."""
    return render_error(404, "No such passkey",
                        "That passkey was removed already, or is not one of yours. Nothing was removed.")


def _with_return_url(endpoint: str, return_url: str | None) -> str:
    """A sign-in page's URL, carrying the pending request's return URL if there is one."""
    return url_for(endpoint, returnUrl=return_url) if return_url else url_for(endpoint)


# --- passwordless sign-in --------------------------------------------------------------------


def _signin_enabled() -> None:
    if not current_app.config["PASSKEY_SIGNIN_ENABLED"]:
        abort(404)


@bp.post("/login/passkey/options")
@limiter.limit(sensitive_limit)
def login_options():
    """Options for navigator.credentials.get() on the login page: any passkey of this site."""
    _signin_enabled()
    return _options(passkeys.authentication_options(issuer()), SIGN_IN_STATE)


@bp.post("/login/passkey")
@limiter.limit(sensitive_limit)
def login():
    """Sign in with the passkey assertion the login page posted, then resume the pending request."""
    _signin_enabled()
    return_url = _return_url()
    client_id = pending_client_id(return_url)
    state = session.pop(SIGN_IN_STATE, None)
    try:
        _, result = passkeys.sign_in(issuer(), state, request.form.get("credential", ""), client_id=client_id)
    except PasskeyRefused as err:
        client_name, redirect_uri = pending_client(return_url)
        allow_form_target(redirect_uri)
        # served at this endpoint's URL: the password form must still post to the password sign-in
        return render_template("account/login.html", form=LoginForm(formdata=None), error=str(err),
                               client_name=client_name, return_url=return_url,
                               form_action=_with_return_url("account.login", return_url)), 400
    principal = sign_in(result, remember=request.form.get("remember") == "y")  # the page's "Keep me signed in"
    return _after_sign_in(principal, return_url)


# --- the second step ---------------------------------------------------------------------------


@bp.app_template_global("second_step_has_passkey")
def second_step_has_passkey() -> bool:
    """Whether the user of this browser's second step has a passkey to offer (login_mfa.html)."""
    found = pending_sign_in()
    return found is not None and bool(passkeys.list_passkeys(found[1].id))


@bp.post("/login/mfa/passkey/options")
@limiter.limit(sensitive_limit)
def second_step_options():
    """Options for navigator.credentials.get() on the second step: the signed-in-so-far user's passkeys."""
    found = pending_sign_in()
    if found is None:
        return jsonify(error="The sign-in expired. Start again."), 400
    return _options(passkeys.authentication_options(issuer(), found[1].id), SECOND_STEP_STATE)


@bp.post("/login/mfa/passkey")
@limiter.limit(sensitive_limit)
def second_step():
    """Finish a sign-in with one of the user's passkeys, then resume the pending request."""
    return_url = _return_url()
    found = pending_sign_in()
    if found is None:  # never started, finished, or expired: start again from the password
        flash(STEP_ENDED, "info")
        drop_pending()
        return redirect(url_for("account.login", returnUrl=return_url) if return_url else url_for("account.login"))
    pending, user = found
    if (sent_back := factors_removed_meanwhile(user.id, return_url)) is not None:
        return sent_back
    state = session.pop(SECOND_STEP_STATE, None)
    try:
        _, result = passkeys.finish_sign_in(issuer(), state, request.form.get("credential", ""), user,
                                            pending_id=pending["id"], amr=pending.get("amr") or mfa.AMR_PASSWORD,
                                            client_id=pending_client_id(return_url))
    except PasskeyRefused as err:
        if (sent_back := factors_removed_meanwhile(user.id, return_url)) is not None:  # as the passkey was checked
            return sent_back
        client_name, redirect_uri = pending_client(return_url)
        allow_form_target(redirect_uri)
        return render_template("account/login_mfa.html", form=SecondFactorForm(formdata=None), error=str(err),
                               client_name=client_name, form_action=_with_return_url("mfa.second_step", return_url),
                               return_url=return_url, codes=mfa.has_totp(user.id), username=user.username), 400
    principal = sign_in(result, remember=pending.get("remember", False), by_email=pending.get("by_email") is True)
    return _after_sign_in(principal, return_url)

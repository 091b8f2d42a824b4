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

from ..auth import sign_in
from ..errors import NotFound, PasskeyRefused
from ..extensions import limiter, sensitive_limit
from ..forms import LoginForm
from ..headers import allow_form_target
from ..issuer import issuer
from ..services import passkeys
from .account import _after_sign_in, _return_url
from .return_urls import pending_authorization, pending_client

bp = Blueprint("passkeys", __name__, url_prefix="/account")

REGISTER_STATE = "passkey.register"
SIGN_IN_STATE = "passkey.sign_in"


@bp.app_template_filter("passkey_date")
def _date(epoch: int | None) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%d %b %Y") if epoch else "-"


def _options(ceremony: passkeys.Ceremony, key: str):
    """Answer a ceremony's options, keeping its state for the one answer that follows."""
    session[key] = ceremony.state
    return current_app.response_class(ceremony.options, mimetype="application/json")


# --- the account's passkeys ------------------------------------------------------------------


@bp.get("/mfa/passkeys")
@fresh_login_required
def index():
    """List the user's passkeys, with a button to register another."""
    return render_template("account/passkeys.html", passkeys=passkeys.list_passkeys(current_user.user.id))


@bp.post("/mfa/passkeys/options")
@fresh_login_required
def register_options():
    """Options for navigator.credentials.create(): this user, this issuer, their passkeys excluded."""
    return _options(passkeys.registration_options(current_user.user.id, issuer()), REGISTER_STATE)


@bp.post("/mfa/passkeys")
@fresh_login_required
@limiter.limit(sensitive_limit)
def register():
    """Verify and store the new passkey the browser created (JSON: credential, name)."""
    body = request.get_json(silent=True) or {}
    state = session.pop(REGISTER_STATE, None)
    try:
        passkey = passkeys.register(current_user.user.id, issuer(), state, body.get("credential"),
                                    str(body.get("name") or ""))
    except PasskeyRefused as err:
        return jsonify(error=str(err)), 400
    return jsonify(id=passkey.id, name=passkey.name), 201


@bp.post("/mfa/passkeys/<int:passkey_id>/remove")
@fresh_login_required
def remove(passkey_id: int):
    """Remove one of the user's passkeys."""
    try:
        passkeys.remove_passkey(current_user.user.id, passkey_id)
    except NotFound:
        abort(404)
    flash("Passkey removed.", "success")
    return redirect(request.form.get("next") == "mfa" and _mfa_page() or url_for("passkeys.index"))


def _mfa_page() -> str | None:
    """The account's factors page, once it exists (the passkeys list is a part of it)."""
    return url_for("mfa.index") if "mfa.index" in current_app.view_functions else None


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
    client_id = pending_authorization(return_url).get("client_id")
    state = session.pop(SIGN_IN_STATE, None)
    try:
        _, result = passkeys.sign_in(issuer(), state, request.form.get("credential", ""), client_id=client_id)
    except PasskeyRefused as err:
        client_name, redirect_uri = pending_client(return_url)
        allow_form_target(redirect_uri)
        return render_template("account/login.html", form=LoginForm(formdata=None), error=str(err),
                               client_name=client_name), 400
    principal = sign_in(result)
    return _after_sign_in(principal, return_url)

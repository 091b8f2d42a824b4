"""The home page, the session diagnostics page, and the site's icon."""

from datetime import datetime, timezone

from flask import Blueprint, current_app, redirect, render_template, send_from_directory, url_for
from flask_login import current_user, login_required

from ..constants import MFA_REQUIRED_PROBLEM

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    """Show the product, the signed-in user, and where discovery lives."""
    return render_template("home.html", user=current_user)


#: browsers ask for /favicon.ico on every site whatever the page links; a day's caching spares
#: a request per page view without pinning an old icon for long
FAVICON_MAX_AGE = 86400


@bp.get("/favicon.ico")
def favicon():
    """Answer the browsers' implicit request for the icon instead of a logged 404."""
    return send_from_directory(current_app.static_folder, "favicon.ico", mimetype="image/x-icon",
                               max_age=FAVICON_MAX_AGE)


@bp.get("/.well-known/change-password")
def change_password():
    """W3C's "A Well-Known URL for Changing Passwords": where a password manager sends someone whose
    saved password is weak or leaked. A redirect to the change-password page (which asks a signed-out
    visitor to sign in first, and returns there)."""
    return redirect(url_for("account.password"))


@bp.get(MFA_REQUIRED_PROBLEM)
def mfa_required_problem():
    """Document the local API's own problem type: RFC 9457 asks a type URI to lead to its description."""
    return render_template("problem_mfa_required.html", recent_seconds=current_app.config["MFA_RECENT_SECONDS"])


@bp.get("/diagnostics")
@login_required
def diagnostics():
    """Show the signed-in session's claims and authentication time."""
    user = current_user.user
    claims = {"sub": user.subject, "preferred_username": user.username, "name": user.name, "email": user.email,
              "sid": current_user.public_sid, "auth_time": current_user.auth_time}
    # people read times, not epoch seconds; the claim's own value stays in the page for tools
    auth_time = datetime.fromtimestamp(current_user.auth_time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return render_template("diagnostics.html", claims=claims, auth_time=auth_time, times={"auth_time": auth_time},
                           sid=current_user.public_sid)

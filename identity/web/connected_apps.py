"""The page where a user sees which apps hold access to their account and revokes it."""

from datetime import datetime, timezone

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..errors import NotFound
from .forms import ConfirmForm
from ..services import consent

bp = Blueprint("grants", __name__, url_prefix="/account/grants")


def _date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%d %b %Y") if epoch else "-"


@bp.get("")
@login_required
def index():
    """List the apps the user has granted access."""
    grants = [
        {"client_id": g.client_id, "client_name": g.client_name, "scopes": g.scopes, "created_at": _date(g.created_at)}
        for g in consent.list_grants(current_user.user.id)
    ]
    return render_template("account/grants.html", grants=grants)


@bp.post("/revoke")
@login_required
def revoke():
    """Revoke one app's consent and refresh tokens."""
    form = ConfirmForm()
    client_id = request.form.get("client_id", "")
    if form.validate_on_submit() and client_id:
        try:
            consent.revoke_grant(current_user.user.id, client_id)
        except NotFound:
            flash("That app has no access to your account: nothing was revoked.", "info")
        else:
            flash("Access revoked.", "success")
    return redirect(url_for("grants.index"))

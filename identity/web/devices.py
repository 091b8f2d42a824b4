"""The page where a user sees where they are signed in (browsers and apps) and ends any of it."""

from datetime import datetime, timezone

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..errors import NotFound
from ..plumbing.login_session import sign_out
from .decisions import render_signed_out
from .forms import ConfirmForm
from ..services import devices

bp = Blueprint("sessions", __name__, url_prefix="/account/sessions")


def _time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%d %b %Y, %H:%M UTC") if epoch else "-"


@bp.get("")
@login_required
def index():
    """List the user's browser sessions and app grants, this browser's first."""
    current = devices.current_browser_entry(current_user.public_sid)
    entries = [{**e._asdict(), "created": _time(e.created_at), "last_used": _time(e.last_used_at)}
               for e in devices.list_entries(current_user.user.id, current)]
    response = render_template("account/sessions.html", entries=entries, form=ConfirmForm())
    return response, 200, {"Cache-Control": "no-store"}


@bp.post("")
@login_required
def end():
    """End one entry (`entry`), or every entry but this browser's session (`scope=others`)."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash("The form expired. Please try again.", "error")
        return redirect(url_for("sessions.index"))
    user_id = current_user.user.id
    current = devices.current_browser_entry(current_user.public_sid)
    if request.form.get("scope") == "others":
        ended = devices.end_all_but(user_id, current)
        flash(f"Signed out everywhere else ({len(ended)} ended)." if ended else "Nothing else to sign out.", "success")
        return redirect(url_for("sessions.index"))
    if request.form.get("entry") == current:  # this browser's own session: as "Sign out" in the header
        devices.record_own_end(user_id, current)  # with the entry's client, so not by sign_out
        return render_signed_out(None, sign_out(current_user, how=None))
    try:
        devices.end_entry(user_id, request.form.get("entry", ""))
    except NotFound:
        flash("That session has already ended.", "info")
        return redirect(url_for("sessions.index"))
    flash("Signed out.", "success")
    return redirect(url_for("sessions.index"))

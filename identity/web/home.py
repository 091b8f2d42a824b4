"""The home page."""

from flask import Blueprint, render_template
from flask_login import current_user

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    """Show the product, the signed-in user, and where discovery lives."""
    return render_template("home.html", user=current_user)

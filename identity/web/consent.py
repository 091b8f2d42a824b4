"""The consent page: the authorization request rides along in the query string."""

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from ..forms import ConfirmForm
from ..headers import allow_form_target
from ..oauth2.authorize import deny_response, error_response, grant_response, validate_request
from ..services import consent as consent_service
from ..services.resources import display_names

bp = Blueprint("consent", __name__)


@bp.route("/consent", methods=["GET", "POST"])
@login_required
def consent():
    """Show the requested scopes; allow (optionally remembered) or deny."""
    try:
        grant = validate_request(current_user)
    except OAuth2Error as error:
        return error_response(error)
    client = grant.request.client.row
    redirect_uri = grant.redirect_uri or grant.request.payload.redirect_uri
    scopes = grant.request.scope.split()
    allow_form_target(redirect_uri)
    form = ConfirmForm()
    if form.validate_on_submit():
        if request.form.get("decision") != "allow":
            return deny_response(grant, redirect_uri)
        if request.form.get("remember"):
            consent_service.remember_consent(current_user.user.id, client.client_id, scopes)
        return grant_response(grant, redirect_uri, current_user)
    status = 400 if request.method == "POST" else 200
    return render_template("consent.html", client_name=client.client_name, scopes=display_names(scopes), form=form), status

"""The consent page: the authorization request rides along in the query string."""

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from .forms import ConfirmForm
from ..plumbing.headers import allow_form_target
from ..oauth2.authorize import AuthorizationParams, ConsentPrompt, answer_consent, consent_prompt
from ..services.resources import display_names
from .decisions import render

bp = Blueprint("consent", __name__)


@bp.route("/consent", methods=["GET", "POST"])
@login_required
def consent():
    """Show the requested scopes; allow (optionally remembered) or deny."""
    prompt = consent_prompt(current_user, AuthorizationParams.from_request())
    if not isinstance(prompt, ConsentPrompt):
        return render(prompt)
    allow_form_target(prompt.request.reply.redirect_uri)
    form = ConfirmForm()
    if form.validate_on_submit():
        answer = answer_consent(prompt, current_user, allow=request.form.get("decision") == "allow",
                                remember=bool(request.form.get("remember")))
        return render(answer)
    status = 400 if request.method == "POST" else 200
    return render_template("consent.html", client_name=prompt.client_name, scopes=display_names(prompt.scopes),
                           form=form, rememberable=prompt.rememberable), status

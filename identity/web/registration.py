"""Self-registration, /account/register: registered only when REGISTRATION_ENABLED (404 otherwise)."""

from flask import Blueprint, current_app, render_template, request, url_for

from ..errors import ValidationFailed
from ..extensions import limiter
from .forms import RegisterForm
from ..services import registration
from ..services.login_names import MAX_EMAIL_LENGTH, mailbox_key
from .return_urls import pending_client, pending_client_id, safe_return_url

bp = Blueprint("registration", __name__, url_prefix="/account")


def registration_limit() -> str:
    return current_app.config["RATELIMIT_REGISTRATION"]


def address_limit() -> str:
    return current_app.config["RATELIMIT_REGISTRATION_ADDRESS"]


def target_address() -> str:
    """The rate-limit key of a registration: the address it mails (a new user's link, or a word
    to the owner of a taken name or address), whoever asks: its mailbox (login_names.mailbox_key)."""
    return "register-address:" + mailbox_key(request.form.get("email", ""))[:MAX_EMAIL_LENGTH]


def mailed(response) -> bool:
    """Whether a registration post mailed its address (the "Check your email" page)."""
    return response.status_code == 200


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(registration_limit, methods=["POST"])
@limiter.limit(address_limit, key_func=target_address, methods=["POST"], deduct_when=mailed)
def register():
    """Create an account, then send the person on to sign in and resume the pending request.

    The answer after a valid form is the same whether or not the user name or address was taken
    (services/registration.py): a page saying a mail is on its way.
    """
    return_url = safe_return_url(request.args.get("returnUrl"))
    form = RegisterForm()
    errors: dict[str, list[str]] = {}
    if form.validate_on_submit():
        try:
            registration.register(form.username.data or "", form.email.data or "", form.name.data or "",
                                  form.password.data or "", form.confirm_password.data or "",
                                  client_id=pending_client_id(return_url))
        except ValidationFailed as err:
            errors = err.errors
        else:
            login_url = url_for("account.login", returnUrl=return_url) if return_url else url_for("account.login")
            return render_template("account/registered.html", email=form.email.data.strip(), login_url=login_url)
    elif form.errors.get("csrf_token"):
        errors = {"form": ["The form expired. Please try again."]}
    elif request.method == "POST":
        errors = {"form": ["Check the fields below."]}
    client_name, _ = pending_client(return_url)
    status = 400 if request.method == "POST" else 200
    return render_template("account/register.html", form=form, errors=errors, client_name=client_name,
                           login_url=url_for("account.login", returnUrl=return_url) if return_url else url_for("account.login"),
                           min_length=current_app.config["PASSWORD_MIN_LENGTH"]), status

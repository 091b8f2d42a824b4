"""Self-registration (REGISTRATION_ENABLED): a new user, and a link to verify their address.

The answer must not tell whether a user name or address is taken, or an attacker could list the
accounts. So a registration that collides with an existing account is answered exactly as one
that creates a user (the same page, one Argon2 hash's time, one mail queued), and the mail tells
the address's owner what happened instead: that they have an account already, or that the user
name they chose is taken. Only problems that depend on the input alone (a weak password, a
mismatched confirmation, a malformed address) are shown on the form.
"""

from sqlalchemy.exc import IntegrityError

from ..clock import now
from ..errors import ValidationFailed
from ..extensions import db
from . import audit, mail, verification
from .accounts import SENT_AGAIN_SECONDS, build_user, find_user
from .login_names import (MAX_USERNAME_LENGTH, length_problem, name_characters_problem, normalize_login,
                          username_characters_problem)
from .password_policy import confirmed, normalize, password_problems
from .passwords import spend_equal_time, verify_password

MAX_NAME_LENGTH = 200


def check_registration(username: str, email: str, name: str, password: str, confirm_password: str) -> dict[str, list[str]]:
    """Field errors that depend on the input alone (never on which accounts exist)."""
    errors: dict[str, list[str]] = {}
    username = username.strip()
    username_problem = length_problem(username, MAX_USERNAME_LENGTH) or username_characters_problem(username)
    if not username:
        errors["username"] = ["Choose a user name."]
    elif username_problem:
        errors["username"] = [username_problem]
    problem = verification.check_email_address(email)
    if problem:
        errors["email"] = [problem]
    name_problem = (f"Use at most {MAX_NAME_LENGTH} characters." if len(name.strip()) > MAX_NAME_LENGTH
                    else name_characters_problem(name))
    if name_problem:
        errors["name"] = [name_problem]
    problems = password_problems(password, username=username, email=email.strip() or None, name=name.strip() or None)
    if problems:
        errors["password"] = problems
    if not confirmed(password, confirm_password):
        errors["confirm_password"] = ["The confirmation does not match the password."]
    return errors


def register(username: str, email: str, name: str, password: str, confirm_password: str, *,
             client_id: str | None = None) -> None:
    """Create a user with an unverified address and mail it a verification link; or, when the user
    name or address is taken, mail the address's owner instead. Both return the same way."""
    errors = check_registration(username, email, name, password, confirm_password)
    if errors:
        raise ValidationFailed(errors)
    username, email, name = username.strip(), email.strip(), name.strip() or None
    if _taken(username, email, password, client_id):
        return
    user = build_user(username, email, name, password)
    db.session.add(user)
    try:
        db.session.flush()  # a concurrent registration of the same name or address fails here
    except IntegrityError:
        db.session.rollback()
        if not _taken(username, email, None, client_id, sent_again_password=password):
            raise  # no name or address taken meanwhile: the database refused the row (503), nobody was mailed
        return
    link = verification.link_for_new_user(user)
    audit.record("user_registered", user_id=user.id, client_id=client_id, detail={"username": user.username})
    db.session.commit()
    verification.send_new_user_link(user, link)


def _taken(username: str, email: str, password: str | None, client_id: str | None, *,
           sent_again_password: str | None = None) -> bool:
    """When the user name or address belongs to an account, tell the address's owner, spend the
    time a new user would have cost (when `password` is given), and say True.

    An account made from the same user name, address and password within SENT_AGAIN_SECONDS is
    this form's first copy (a double click, a browser's resend): its link is on its way, and its
    owner is told nothing more. The password (`password`, or `sent_again_password` where the
    hash was spent already) is checked against its hash in the time the dummy hash would take."""
    by_email = find_user(email)
    by_name = find_user(username)
    if by_email is None and by_name is None:
        return False
    # either lookup may be the one that finds it: the first copy may commit between the two
    just_made = next((user for user in (by_email, by_name) if user is not None
                      and user.username_normalized == normalize_login(username)
                      and user.email_normalized == normalize_login(email)
                      and now() - user.created_at <= SENT_AGAIN_SECONDS), None)
    candidate = password if password is not None else sent_again_password
    if just_made is not None and candidate is not None:
        if verify_password(just_made.password_hash, normalize(candidate)):
            return True
    elif password is not None:
        spend_equal_time(normalize(password))  # the hash a new user would have cost
    login = mail.link("/account/login")
    if by_email is not None:
        audit.record("registration_refused", user_id=by_email.id, client_id=client_id, detail={"reason": "email_taken"})
        db.session.commit()
        mail.send_later(email, "registration_existing", user_id=by_email.id, username=by_email.username,
                        name=by_email.name or by_email.username, login=login,
                        forgot=mail.link("/account/forgot-password"))
    else:
        audit.record("registration_refused", client_id=client_id, detail={"reason": "username_taken"})
        db.session.commit()
        mail.send_later(email, "registration_username_taken", user_id=None, username=username,
                        register=mail.link("/account/register"))
    return True

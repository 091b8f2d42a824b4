"""The users: list, add, remove, set a password, disable, enable, unlock, reset second factors."""

import json

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from ..clock import now
from ..errors import NotFound, ValidationFailed
from ..services.input_schemas import UserSchema, field_errors
from ..services import accounts, mfa, notifications, user_status
from .common import with_schema, _when, _report, json_option, json_list_option, _read_password


users_cli = AppGroup("users", help="List, add and remove users; set passwords.")


@users_cli.command("list")
@json_list_option
@with_schema
def users_list(as_json):
    """List users."""
    if as_json:
        click.echo(json.dumps([{"username": u.username, "email": u.email, "name": u.name, "enabled": u.enabled,
                                "locked": u.locked_until > now(), "password_changed_at": u.password_changed_at}
                               for u in accounts.list_users()]))
        return
    for u in accounts.list_users():
        click.echo(f"{u.username}\t{u.email or '-'}\t{u.name or '-'}\tpassword changed {_when(u.password_changed_at)}")


@users_cli.command("add")
@click.argument("username")
@click.option("--email")
@click.option("--name")
@click.option("--email-verified", is_flag=True,
              help="The operator has checked that the address is the user's (else it counts once its owner follows a link).")
@json_option
@with_schema
def users_add(username, email, name, email_verified, as_json):
    """Add a user; the password is read from a prompt or standard input."""
    password = _read_password(prompt=True)
    try:
        UserSchema().load({"username": username, "email": email, "name": name, "password": password,
                           "email_verified": email_verified})
    except ValidationError as err:
        raise ValidationFailed(field_errors(err.messages))
    accounts.create_user(username, password, email=email, name=name, email_verified=email_verified)
    _report(as_json, f"Added user {username}.", username=username, added=True)


@users_cli.command("remove")
@click.argument("username")
@json_option
@with_schema
def users_remove(username, as_json):
    """Remove a user and their sessions, grants and tokens."""
    accounts.remove_user(username)
    _report(as_json, f"Removed user {username}.", username=username, removed=True)


@users_cli.command("set-password")
@click.argument("username")
@json_option
@with_schema
def users_set_password(username, as_json):
    """Set a user's password from a prompt or standard input; signs them out everywhere."""
    password = _read_password(prompt=True)
    accounts.set_password(username, password)
    _report(as_json, f"Password set for {username}; their sessions and refresh tokens were revoked.",
            username=username, password_set=True)


def _switch_user(username: str, enabled: bool, as_json: bool) -> None:
    change = (user_status.enable_user if enabled else user_status.disable_user)(username)
    state = "enabled" if enabled else "disabled"
    line = f"User {change.username} {'is now' if change.changed else 'was already'} {state}."
    if change.changed and not enabled:
        line = f"User {change.username} is now disabled; their sessions and tokens were revoked."
    _report(as_json, line, username=change.username, enabled=enabled, changed=change.changed)


@users_cli.command("disable")
@click.argument("username")
@json_option
@with_schema
def users_disable(username, as_json):
    """Stop a user signing in and revoke their sessions and tokens, on every worker once this returns."""
    _switch_user(username, False, as_json)


@users_cli.command("enable")
@click.argument("username")
@json_option
@with_schema
def users_enable(username, as_json):
    """Let a disabled user sign in again (what was revoked stays revoked)."""
    _switch_user(username, True, as_json)


@users_cli.command("unlock")
@click.argument("username")
@json_option
@with_schema
def users_unlock(username, as_json):
    """Clear a user's lockout: the count of wrong passwords and any lock."""
    change = user_status.unlock_user(username)
    line = f"User {change.username} unlocked." if change.changed else f"User {change.username} was not locked."
    _report(as_json, line, username=change.username, changed=change.changed)


@users_cli.command("mfa-reset")
@click.argument("username")
@json_option
@with_schema
def users_mfa_reset(username, as_json):
    """Remove a user's second factors (a lost phone); they sign in with the password alone until they set one up."""
    user = accounts.existing_user(username)
    to = notifications.addressee(user)  # read now: after the commit, a removal may have left no row to read
    try:
        had = mfa.reset_factors(user.id)
    except NotFound:  # removed meanwhile
        raise click.ClickException(f"no user {username!r}") from None
    if had:
        notifications.second_factors_removed(to)
    _report(as_json, f"Removed the second factors of {to.username}." if had else f"{to.username} had no second factor.",
            username=to.username, removed=had)

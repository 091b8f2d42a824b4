"""The operator's commands: seed, clients, users, scopes, keys, audit, purge."""

import functools
import json
import sys
from datetime import datetime, timezone

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError

from . import settings
from .database import ensure_schema
from .errors import IdentityError, ValidationFailed
from .schemas import ApiScopeSchema, UserSchema, field_errors
from .services import accounts, audit, clients, key_encryption, keys, purge, resources
from .services.seed import apply_seed, load_seed


def with_schema(fn=None, *, standard_resources: bool = True):
    """Create or upgrade the schema before the command runs; turn domain errors into messages."""
    if fn is None:
        return functools.partial(with_schema, standard_resources=standard_resources)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ensure_schema(standard_resources=standard_resources)
        try:
            return fn(*args, **kwargs)
        except ValidationFailed as err:
            raise click.ClickException("\n".join(f"{where}: {msg}" for where, msgs in err.errors.items() for msg in msgs))
        except IdentityError as err:
            raise click.ClickException(str(err))

    return wrapper


def requires_settings(*names: str):
    """For a command that needs a setting only serving otherwise needs: `Error: <NAME> is required ...`
    and exit 1 when it is missing (identity.settings.require), before the command does anything."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            settings.require(current_app, *names)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def _when(epoch: int | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@click.command("seed")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--reset-passwords", is_flag=True,
              help="Also set existing users' passwords to the file's (audited per user). "
                   "Without it, the file's password is used only to create a user.")
@with_appcontext
@with_schema(standard_resources=False)  # the seed adds them in its transaction, and counts them
def seed_command(file, reset_passwords):
    """Create or update clients, API scopes and users from a JSON FILE (all or nothing).

    Existing users keep their passwords unless --reset-passwords is given.
    """
    data = load_seed(file.read())
    try:
        report = apply_seed(data, reset_passwords=reset_passwords)
    except IntegrityError:  # another seed committed the same rows first: redo against what it wrote
        report = apply_seed(data, reset_passwords=reset_passwords)
    if not report.changed:
        click.echo(f"No change: {len(report.unchanged)} item(s) already up to date.")
        return
    for label in report.created:
        click.echo(f"created {label}")
    for label in report.updated:
        click.echo(f"updated {label}")
    click.echo(f"Seeded: {len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged.")


# --- clients -----------------------------------------------------------------

clients_cli = AppGroup("clients", help="List, add and remove clients.")


@clients_cli.command("list")
@with_schema
def clients_list():
    """List registered clients."""
    for c in clients.list_clients():
        kind = "public" if c.is_public else "confidential"
        click.echo(f"{c.client_id}\t{kind}\t{','.join(c.allowed_grant_types)}\t{' '.join(c.allowed_scopes)}")


@clients_cli.command("add")
@click.argument("client_id")
@click.option("--name", "client_name", help="Display name shown on the consent page.")
@click.option("--grant-type", "grant_types", multiple=True, required=True,
              help="authorization_code, hybrid, implicit, client_credentials or password (repeatable).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI (repeatable).")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--scope", "scopes", multiple=True, help="Allowed scope (repeatable).")
@click.option("--cors-origin", "cors_origins", multiple=True)
@click.option("--public", is_flag=True, help="No secret: a native or browser app that must use PKCE.")
@click.option("--require-consent/--no-require-consent", default=False)
@click.option("--offline-access/--no-offline-access", default=False, help="Allow refresh tokens.")
@click.option("--access-tokens-via-browser/--no-access-tokens-via-browser", default=False)
@click.option("--access-token-lifetime", type=int, default=3600, show_default=True)
@click.option("--require-verified-email/--no-require-verified-email", default=False,
              help="Sign-in for this client completes only with a verified email address.")
@with_schema
def clients_add(client_id, client_name, grant_types, redirect_uris, post_logout_redirect_uris, scopes,
                cors_origins, public, require_consent, offline_access, access_tokens_via_browser, access_token_lifetime,
                require_verified_email):
    """Register a client; a confidential client's generated secret is printed once."""
    raw = {
        "client_id": client_id,
        "client_name": client_name or client_id,
        "allowed_grant_types": list(grant_types),
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": list(post_logout_redirect_uris),
        "allowed_scopes": list(scopes),
        "allowed_cors_origins": list(cors_origins),
        "require_consent": require_consent,
        "allow_offline_access": offline_access,
        "allow_access_tokens_via_browser": access_tokens_via_browser,
        "access_token_lifetime": access_token_lifetime,
        "require_verified_email": require_verified_email,
    }
    client, secret = clients.add_client(raw, generate_secret=not public)
    click.echo(f"Added client {client.client_id}.")
    if secret:
        click.echo(f"Client secret (shown only now, store it safely): {secret}")


@clients_cli.command("remove")
@click.argument("client_id")
@with_schema
def clients_remove(client_id):
    """Remove a client and everything issued to it."""
    clients.remove_client(client_id)
    click.echo(f"Removed client {client_id}.")


# --- users -------------------------------------------------------------------

users_cli = AppGroup("users", help="List, add and remove users; set passwords.")


def _read_password(prompt: bool) -> str:
    """Read a password from a prompt (terminal) or the first line of standard input; never argv."""
    if sys.stdin.isatty() and prompt:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException("no password on standard input")
    return line.rstrip("\r\n")


@users_cli.command("list")
@with_schema
def users_list():
    """List users."""
    for u in accounts.list_users():
        click.echo(f"{u.username}\t{u.email or '-'}\t{u.name or '-'}\tpassword changed {_when(u.password_changed_at)}")


@users_cli.command("add")
@click.argument("username")
@click.option("--email")
@click.option("--name")
@click.option("--email-verified", is_flag=True,
              help="The operator has checked that the address is the user's (else it counts once its owner follows a link).")
@with_schema
def users_add(username, email, name, email_verified):
    """Add a user; the password is read from a prompt or standard input."""
    password = _read_password(prompt=True)
    try:
        UserSchema().load({"username": username, "email": email, "name": name, "password": password,
                           "email_verified": email_verified})
    except ValidationError as err:
        raise ValidationFailed(field_errors(err.messages))
    accounts.create_user(username, password, email=email, name=name, email_verified=email_verified)
    click.echo(f"Added user {username}.")


@users_cli.command("remove")
@click.argument("username")
@with_schema
def users_remove(username):
    """Remove a user and their sessions, grants and tokens."""
    accounts.remove_user(username)
    click.echo(f"Removed user {username}.")


@users_cli.command("set-password")
@click.argument("username")
@with_schema
def users_set_password(username):
    """Set a user's password from a prompt or standard input; signs them out everywhere."""
    password = _read_password(prompt=True)
    accounts.set_password(username, password)
    click.echo(f"Password set for {username}; their sessions and refresh tokens were revoked.")


# --- scopes ------------------------------------------------------------------

scopes_cli = AppGroup("scopes", help="List, add and remove API scopes.")


@scopes_cli.command("list")
@with_schema
def scopes_list():
    """List API scopes (identity scopes openid, profile, email, offline_access always exist)."""
    for s in resources.list_api_scopes():
        click.echo(f"{s.name}\t{s.display_name or '-'}")


@scopes_cli.command("add")
@click.argument("name")
@click.option("--display-name")
@click.option("--description")
@with_schema
def scopes_add(name, display_name, description):
    """Add an API scope."""
    try:
        data = ApiScopeSchema().load({"name": name, "display_name": display_name, "description": description})
    except ValidationError as err:
        raise ValidationFailed(field_errors(err.messages))
    resources.add_api_scope(**data)
    click.echo(f"Added API scope {name}.")


@scopes_cli.command("remove")
@click.argument("name")
@with_schema
def scopes_remove(name):
    """Remove an API scope no client uses."""
    resources.remove_api_scope(name)
    click.echo(f"Removed API scope {name}.")


# --- keys and audit --------------------------------------------------------------

keys_cli = AppGroup("keys", help="List, rotate and re-encrypt signing keys.")


@keys_cli.command("list")
@with_schema
@requires_settings("KEY_ENCRYPTION_KEY")
def keys_list():
    """List signing keys: pending (published, not signing yet), current, published (retired),
    expired or revoked."""
    for alg in keys.configured_algs():
        keys.signing_key(alg)
    for row, state in keys.list_keys():
        click.echo(f"{row.kid}\t{row.alg}\t{state}\tcreated {_when(row.created_at)}"
                   f"\tsigns from {_when(row.activates_at)}\tretired {_when(row.retired_at)}")


@keys_cli.command("rotate")
@click.option("--now", "immediate", is_flag=True,
              help="Emergency (a compromised key): new keys sign at once and every older key leaves the JWKS.")
@with_schema
@requires_settings("KEY_ENCRYPTION_KEY")
def keys_rotate(immediate):
    """Publish new keys that sign after the propagation time (SIGNING_KEY_PROPAGATION_SECONDS);
    the current ones sign until then and stay published for SIGNING_KEY_RETENTION_SECONDS."""
    for row in keys.rotate(immediate=immediate):
        if immediate:
            click.echo(f"New current {row.alg} key {row.kid}.")
        else:
            click.echo(f"{row.alg} key {row.kid} is published and signs from {_when(row.activates_at)}; "
                       "the current key signs until then.")
    if immediate:
        seconds = current_app.config["DISCOVERY_CACHE_SECONDS"]
        click.echo("Tokens in flight signed by the old keys are refused from now on (clients must refresh or sign in "
                   f"again); relying parties that cached the JWKS may refuse new tokens for up to {seconds} s.")


@keys_cli.command("reencrypt")
@with_schema
@requires_settings("KEY_ENCRYPTION_KEY")
def keys_reencrypt():
    """Encrypt every stored key under the first KEY_ENCRYPTION_KEY (after a new one is put first)."""
    try:
        count = keys.reencrypt()
    except key_encryption.UndecryptableKey as err:
        raise click.ClickException(f"{err}; nothing was changed") from None
    click.echo(f"Re-encrypted {count} signing keys under the first KEY_ENCRYPTION_KEY.")


audit_cli = AppGroup("audit", help="Read the security audit log.")


@audit_cli.command("tail")
@click.option("-n", "--lines", default=20, show_default=True, type=click.IntRange(min=1), help="How many events.")
@with_schema
def audit_tail(lines):
    """Print the newest security events, oldest first, one JSON object a line."""
    for e in audit.tail(lines):
        click.echo(json.dumps({"at": _when(e.at), "event": e.event, "user_id": e.user_id,
                               "client_id": e.client_id, "ip": e.ip, "detail": e.detail}))


# --- purge ---------------------------------------------------------------------


@click.command("purge")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
@with_appcontext
@with_schema
def purge_command(as_json):
    """Remove expired codes and tokens, ended sessions and old audit events (docs/deployment.md, Purge and retention)."""
    removed = purge.purge()
    if as_json:
        click.echo(json.dumps(removed))
    else:
        click.echo("Purged: " + ", ".join(f"{kind} {count}" for kind, count in removed.items()) + ".")


def init_app(app: Flask) -> None:
    for command in (seed_command, clients_cli, users_cli, scopes_cli, keys_cli, audit_cli):
        app.cli.add_command(command)
    app.cli.add_command(purge_command)

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

from .config import startup
from .clock import now
from .services.schema import ensure_schema
from .errors import IdentityError, ValidationFailed
from .services.input_schemas import ApiScopeSchema, UserSchema, field_errors
from .services import accounts, audit, clients, devices, key_encryption, keys, mfa, purge, resources, user_status
from .services.seed import apply_seed, load_seed
from .services.logout_delivery import deliver_due


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
            raise click.ClickException("; ".join(f"{where}: {msg}" for where, msgs in err.errors.items() for msg in msgs))
        except IdentityError as err:
            raise click.ClickException(str(err))

    return wrapper


def requires_settings(*names: str):
    """For a command that needs a setting only serving otherwise needs: `Error: <NAME> is required ...`
    and exit 1 when it is missing (identity.config.startup.require), before the command does anything."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            startup.require(current_app, *names)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def _when(epoch: int | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _report(as_json: bool, line: str, **fields) -> None:
    """The command's one line of result, or its fields as one JSON object for scripts."""
    click.echo(json.dumps(fields, sort_keys=True) if as_json else line)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")


@click.command("seed")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--reset-passwords", is_flag=True,
              help="Also set existing users' passwords to the file's (audited per user). "
                   "Without it, the file's password is used only to create a user.")
@json_option
@with_appcontext
@with_schema(standard_resources=False)  # the seed adds them in its transaction, and counts them
def seed_command(file, reset_passwords, as_json):
    """Create or update clients, API scopes and users from a JSON FILE (all or nothing).

    Existing users keep their passwords unless --reset-passwords is given.
    """
    data = load_seed(file.read())
    try:
        report = apply_seed(data, reset_passwords=reset_passwords)
    except IntegrityError:  # another seed committed the same rows first: redo against what it wrote
        report = apply_seed(data, reset_passwords=reset_passwords)
    if as_json:
        click.echo(json.dumps({"created": report.created, "updated": report.updated,
                               "unchanged": len(report.unchanged)}, sort_keys=True))
        return
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
@json_option
@with_schema
def clients_list(as_json):
    """List registered clients."""
    if as_json:
        click.echo(json.dumps([{"client_id": c.client_id, "client_name": c.client_name, "public": c.is_public,
                                "enabled": c.enabled, "grant_types": c.allowed_grant_types, "scopes": c.allowed_scopes}
                               for c in clients.list_clients()]))
        return
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
@click.option("--backchannel-logout-uri", help="https URL the server posts logout tokens to (Back-Channel Logout).")
@click.option("--backchannel-logout-session-required/--no-backchannel-logout-session-required", default=False,
              help="Every logout token must carry the session's sid.")
@click.option("--frontchannel-logout-uri", help="https URL the signed-out page loads in an iframe (Front-Channel Logout).")
@click.option("--frontchannel-logout-session-required/--no-frontchannel-logout-session-required", default=False,
              help="The iframe URL carries iss and sid.")
@click.option("--require-mfa/--no-require-mfa", default=False, help="Its users sign in with a second factor.")
@click.option("--require-verified-email/--no-require-verified-email", default=False,
              help="Sign-in for this client completes only with a verified email address.")
@json_option
@with_schema
def clients_add(client_id, client_name, grant_types, redirect_uris, post_logout_redirect_uris, scopes,
                cors_origins, public, require_consent, offline_access, access_tokens_via_browser, access_token_lifetime,
                backchannel_logout_uri, backchannel_logout_session_required, frontchannel_logout_uri,
                frontchannel_logout_session_required, require_mfa, require_verified_email, as_json):
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
        "backchannel_logout_uri": backchannel_logout_uri,
        "backchannel_logout_session_required": backchannel_logout_session_required,
        "frontchannel_logout_uri": frontchannel_logout_uri,
        "frontchannel_logout_session_required": frontchannel_logout_session_required,
        "require_mfa": require_mfa,
        "require_verified_email": require_verified_email,
    }
    client, secret = clients.add_client(raw, generate_secret=not public)
    if as_json:  # the secret is in it, once, as in the text
        click.echo(json.dumps({"client_id": client.client_id, "client_secret": secret}, sort_keys=True))
        return
    click.echo(f"Added client {client.client_id}.")
    if secret:
        click.echo(f"Client secret (shown only now, store it safely): {secret}")


@clients_cli.command("remove")
@click.argument("client_id")
@json_option
@with_schema
def clients_remove(client_id, as_json):
    """Remove a client and everything issued to it."""
    clients.remove_client(client_id)
    _report(as_json, f"Removed client {client_id}.", client_id=client_id, removed=True)


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
@json_option
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


# --- scopes ------------------------------------------------------------------

scopes_cli = AppGroup("scopes", help="List, add and remove API scopes.")


@scopes_cli.command("list")
@json_option
@with_schema
def scopes_list(as_json):
    """List API scopes (identity scopes openid, profile, email, offline_access always exist)."""
    if as_json:
        click.echo(json.dumps([{"name": s.name, "display_name": s.display_name} for s in resources.list_api_scopes()]))
        return
    for s in resources.list_api_scopes():
        click.echo(f"{s.name}\t{s.display_name or '-'}")


@scopes_cli.command("add")
@click.argument("name")
@click.option("--display-name")
@click.option("--description")
@json_option
@with_schema
def scopes_add(name, display_name, description, as_json):
    """Add an API scope."""
    try:
        data = ApiScopeSchema().load({"name": name, "display_name": display_name, "description": description})
    except ValidationError as err:
        raise ValidationFailed(field_errors(err.messages))
    resources.add_api_scope(**data)
    _report(as_json, f"Added API scope {name}.", name=name, added=True)


@scopes_cli.command("remove")
@click.argument("name")
@json_option
@with_schema
def scopes_remove(name, as_json):
    """Remove an API scope no client uses."""
    resources.remove_api_scope(name)
    _report(as_json, f"Removed API scope {name}.", name=name, removed=True)


# --- keys and audit --------------------------------------------------------------

keys_cli = AppGroup("keys", help="List, rotate and re-encrypt signing keys.")


@keys_cli.command("list")
@json_option
@with_schema
@requires_settings("KEY_ENCRYPTION_KEY")
def keys_list(as_json):
    """List signing keys: pending (published, not signing yet), current, published (retired),
    expired or revoked."""
    for alg in keys.configured_algs():
        keys.signing_key(alg)
    if as_json:
        click.echo(json.dumps([{"kid": row.kid, "alg": row.alg, "state": state, "created_at": row.created_at,
                                "activates_at": row.activates_at, "retired_at": row.retired_at}
                               for row, state in keys.list_keys()]))
        return
    for row, state in keys.list_keys():
        click.echo(f"{row.kid}\t{row.alg}\t{state}\tcreated {_when(row.created_at)}"
                   f"\tsigns from {_when(row.activates_at)}\tretired {_when(row.retired_at)}")


@keys_cli.command("rotate")
@click.option("--now", "immediate", is_flag=True,
              help="Emergency (a compromised key): new keys sign at once and every older key leaves the JWKS.")
@json_option
@with_schema
@requires_settings("KEY_ENCRYPTION_KEY")
def keys_rotate(immediate, as_json):
    """Publish new keys that sign after the propagation time (SIGNING_KEY_PROPAGATION_SECONDS);
    the current ones sign until then and stay published for SIGNING_KEY_RETENTION_SECONDS."""
    rotated = keys.rotate(immediate=immediate)
    if as_json:
        click.echo(json.dumps([{"kid": row.kid, "alg": row.alg, "activates_at": row.activates_at} for row in rotated]))
        return
    for row in rotated:
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
@json_option
@with_schema
@requires_settings("KEY_ENCRYPTION_KEY")
def keys_reencrypt(as_json):
    """Encrypt every stored key under the first KEY_ENCRYPTION_KEY (after a new one is put first)."""
    try:
        count = keys.reencrypt()
    except key_encryption.UndecryptableKey as err:
        raise click.ClickException(f"{err}; nothing was changed") from None
    _report(as_json, f"Re-encrypted {count} signing keys under the first KEY_ENCRYPTION_KEY.", reencrypted=count)


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
    for command in (seed_command, clients_cli, users_cli, scopes_cli, keys_cli, audit_cli, sessions_cli):
        app.cli.add_command(command)
    app.cli.add_command(purge_command)
    app.cli.add_command(logout_deliveries_cli)


# --- sessions (issue 18) ---------------------------------------------------------

sessions_cli = AppGroup("sessions", help="List and end a user's browser sessions and app grants.")


def _user_id(username: str) -> int:
    user = accounts.find_user(username)
    if user is None:
        raise click.ClickException(f"no such user: {username}")
    return user.id


def _entry_json(entry) -> dict:
    return {"id": entry.id, "kind": entry.kind, "client_id": entry.client_id, "client_name": entry.client_name,
            "created_at": _when(entry.created_at), "last_used_at": _when(entry.last_used_at),
            "device": entry.device, "ip_address": entry.ip_address}


@sessions_cli.command("list")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@with_schema
def sessions_list(username, as_json):
    """List a user's live browser sessions and app grants, the most recently used first."""
    entries = devices.list_entries_audited(_user_id(username), by="operator")
    if as_json:
        click.echo(json.dumps([_entry_json(e) for e in entries]))
        return
    for e in entries:
        click.echo(f"{e.id}\t{e.kind}\t{e.client_name}\t{e.device}\t{e.ip_address or '-'}\t"
                   f"created {_when(e.created_at)}\tlast used {_when(e.last_used_at)}")


@sessions_cli.command("end")
@click.argument("username")
@click.argument("entry_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the ended ids as one JSON object.")
@with_schema
def sessions_end(username, entry_id, as_json):
    """End one of a user's sessions or grants (ID from `sessions list`), or all of them without ID."""
    user_id = _user_id(username)
    if entry_id is None:
        ended = devices.end_all_but(user_id, None, by="operator")
    else:
        ended = [devices.end_entry(user_id, entry_id, by="operator")]
    if as_json:
        click.echo(json.dumps({"user": username, "ended": [e.id for e in ended]}))
    else:
        click.echo(f"Ended {len(ended)} session(s) and grant(s) of {username}.")


# --- operators: update, disable and enable clients; disable, enable and unlock users ---------------
# Each prints one line (or one JSON object with --json); an error is one line and exit 1; the
# services audit every change.

@clients_cli.command("update")
@click.argument("client_id")
@click.option("--name", "client_name", help="Display name shown on the consent page.")
@click.option("--grant-type", "grant_types", multiple=True, help="Replaces the grant types (repeatable).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Replaces the redirect URIs (repeatable).")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True,
              help="Replaces the post-logout redirect URIs (repeatable).")
@click.option("--scope", "scopes", multiple=True, help="Replaces the allowed scopes (repeatable).")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Replaces the CORS origins (repeatable).")
@click.option("--require-consent/--no-require-consent", default=None)
@click.option("--offline-access/--no-offline-access", default=None, help="Allow refresh tokens.")
@click.option("--access-tokens-via-browser/--no-access-tokens-via-browser", default=None)
@click.option("--access-token-lifetime", type=int)
@json_option
@with_schema
def clients_update(client_id, client_name, grant_types, redirect_uris, post_logout_redirect_uris, scopes,
                   cors_origins, require_consent, offline_access, access_tokens_via_browser, access_token_lifetime,
                   as_json):
    """Change the given fields of a client (the options of `clients add`); the others, and its secret, stay."""
    given = {
        "client_name": client_name,
        "allowed_grant_types": list(grant_types) or None,
        "redirect_uris": list(redirect_uris) or None,
        "post_logout_redirect_uris": list(post_logout_redirect_uris) or None,
        "allowed_scopes": list(scopes) or None,
        "allowed_cors_origins": list(cors_origins) or None,
        "require_consent": require_consent,
        "allow_offline_access": offline_access,
        "allow_access_tokens_via_browser": access_tokens_via_browser,
        "access_token_lifetime": access_token_lifetime,
    }
    changes = {name: value for name, value in given.items() if value is not None}
    if not changes:
        raise click.UsageError("give at least one field to change (see --help)")
    _, changed = clients.update_client(client_id, changes)
    line = f"Updated client {client_id}: {', '.join(changed)}." if changed else f"No change to client {client_id}."
    _report(as_json, line, client_id=client_id, changed=changed, result="updated" if changed else "unchanged")


def _switch_client(client_id: str, enabled: bool, as_json: bool) -> None:
    changed = clients.set_client_enabled(client_id, enabled)
    state = "enabled" if enabled else "disabled"
    line = f"Client {client_id} {'is now' if changed else 'was already'} {state}."
    if changed and not enabled:
        line = f"Client {client_id} is now disabled; its requests and tokens are refused on every worker."
    _report(as_json, line, client_id=client_id, enabled=enabled, changed=changed)


@clients_cli.command("disable")
@click.argument("client_id")
@json_option
@with_schema
def clients_disable(client_id, as_json):
    """Refuse a client's authorization and token requests and its access tokens, on every worker
    once this returns (after CLIENT_CACHE_SECONDS); `clients enable` undoes it."""
    _switch_client(client_id, False, as_json)


@clients_cli.command("enable")
@click.argument("client_id")
@json_option
@with_schema
def clients_enable(client_id, as_json):
    """Accept a disabled client again (its unexpired tokens work again)."""
    _switch_client(client_id, True, as_json)


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


# --- logout deliveries (back-channel logout, services/logout_delivery.py) --------

logout_deliveries_cli = AppGroup("logout-deliveries", help="Send the queued back-channel logout tokens.")


@logout_deliveries_cli.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
@with_schema
def logout_deliveries_run(as_json):
    """Send every logout token that is due now, once each (safe beside serving workers)."""
    total = {"delivered": 0, "retry": 0, "given_up": 0}
    while True:
        counts = deliver_due()
        for outcome, count in counts.items():
            total[outcome] += count
        if sum(counts.values()) < 100:
            break
    if as_json:
        click.echo(json.dumps(total))
    else:
        click.echo(f"Delivered {total['delivered']}, to retry {total['retry']}, given up {total['given_up']}.")


# --- multi-factor authentication (docs/mfa.md) -----------------------------------


@users_cli.command("mfa-reset")
@click.argument("username")
@with_schema
def users_mfa_reset(username):
    """Remove a user's second factors (a lost phone); they sign in with the password alone until they set one up."""
    user = accounts.find_user(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    had = mfa.reset_factors(user.id)
    click.echo(f"Removed the second factors of {user.username}." if had else f"{user.username} had no second factor.")

"""The clients: list, add, update, disable, enable, remove."""

import json

import click
from flask.cli import AppGroup

from ..services import clients
from .common import with_schema, _report, json_option, json_list_option


clients_cli = AppGroup("clients", help="List, add and remove clients.")


@clients_cli.command("list")
@json_list_option
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
def clients_add(client_id, public, as_json, **options):
    """Register a client; a confidential client's generated secret is printed once."""
    raw = {"client_id": client_id, **_client_fields(options)}
    raw["client_name"] = raw["client_name"] or client_id
    # the id as given (stored as given): the row, read after the commit, may be gone by then (a removal)
    _, secret = clients.add_client(raw, generate_secret=not public)
    if as_json:  # the secret is in it, once, as in the text
        click.echo(json.dumps({"client_id": client_id, "client_secret": secret}, sort_keys=True))
        return
    click.echo(f"Added client {client_id}.")
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
@click.option("--backchannel-logout-uri", help="https URL for logout tokens; an empty value removes it.")
@click.option("--backchannel-logout-session-required/--no-backchannel-logout-session-required", default=None)
@click.option("--frontchannel-logout-uri", help="https URL for the logout iframe; an empty value removes it.")
@click.option("--frontchannel-logout-session-required/--no-frontchannel-logout-session-required", default=None)
@click.option("--require-mfa/--no-require-mfa", default=None, help="Its users sign in with a second factor.")
@click.option("--require-verified-email/--no-require-verified-email", default=None,
              help="Sign-in for this client completes only with a verified email address.")
@json_option
@with_schema
def clients_update(client_id, as_json, **options):
    """Change the given fields of a client (the options of `clients add`); the others, and its secret, stay."""
    given = {name: value or None if isinstance(value, list) else value for name, value in _client_fields(options).items()}
    changes = {name: value for name, value in given.items() if value is not None}
    for name in ("backchannel_logout_uri", "frontchannel_logout_uri"):
        if changes.get(name) == "":  # given empty: no such URI any more
            changes[name] = None
    if not changes:
        raise click.UsageError("give at least one field to change (see --help)")
    _, changed = clients.update_client(client_id, changes)
    line = f"Updated client {client_id}: {', '.join(changed)}." if changed else f"No change to client {client_id}."
    _report(as_json, line, client_id=client_id, changed=changed, result="updated" if changed else "unchanged")


#: each option of `clients add` and `clients update` -> the client field it sets
_OPTION_FIELDS = {
    "client_name": "client_name", "grant_types": "allowed_grant_types", "redirect_uris": "redirect_uris",
    "post_logout_redirect_uris": "post_logout_redirect_uris", "scopes": "allowed_scopes",
    "cors_origins": "allowed_cors_origins", "require_consent": "require_consent", "offline_access": "allow_offline_access",
    "access_tokens_via_browser": "allow_access_tokens_via_browser", "access_token_lifetime": "access_token_lifetime",
    "backchannel_logout_uri": "backchannel_logout_uri",
    "backchannel_logout_session_required": "backchannel_logout_session_required",
    "frontchannel_logout_uri": "frontchannel_logout_uri",
    "frontchannel_logout_session_required": "frontchannel_logout_session_required",
    "require_mfa": "require_mfa", "require_verified_email": "require_verified_email",
}


def _client_fields(options: dict) -> dict:
    """The client fields a command's options give, by their schema names (a repeatable option as a list)."""
    return {field: list(options[name]) if isinstance(options[name], tuple) else options[name]
            for name, field in _OPTION_FIELDS.items()}


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

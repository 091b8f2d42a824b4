"""The signing keys: list, rotate, re-encrypt."""

import functools
import json

import click
from flask import current_app
from flask.cli import AppGroup

from ..clock import now
from ..services import key_encryption, keys
from .common import with_schema, requires_settings, _when, _report, json_option, json_list_option


keys_cli = AppGroup("keys", help="List, rotate and re-encrypt signing keys.")


def _opening_keys(fn):
    """A stored key that no KEY_ENCRYPTION_KEY opens is one `Error:` line naming it, not a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except key_encryption.UndecryptableKey as err:
            raise click.ClickException(str(err)) from None
    return wrapper


@keys_cli.command("list")
@json_list_option
@requires_settings("KEY_ENCRYPTION_KEY")  # first: before the schema is created or upgraded
@with_schema
@_opening_keys
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
              help="Emergency (a compromised key): new keys sign at once and every older key leaves the JWKS; "
                   "returns once no worker signs with an older key (after SIGNING_KEY_RELOAD_SECONDS).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON list: each algorithm's newest key (kid, alg, activates_at).")
@requires_settings("KEY_ENCRYPTION_KEY")  # first: before the schema is created or upgraded
@with_schema
@_opening_keys
def keys_rotate(immediate, as_json):
    """Publish new keys that sign after the propagation time (SIGNING_KEY_PROPAGATION_SECONDS);
    the current ones sign until then and stay published for SIGNING_KEY_RETENTION_SECONDS."""
    rotated = keys.rotate(immediate=immediate)
    if as_json:
        click.echo(json.dumps([{"kid": row.kid, "alg": row.alg, "activates_at": row.activates_at} for row in rotated]))
        return
    stamp = now()
    for row in rotated:
        if immediate:
            click.echo(f"New current {row.alg} key {row.kid}.")
        elif row.activates_at <= stamp:  # no key yet: the first one signs at once, no key is replaced
            click.echo(f"{row.alg} key {row.kid} is the first {row.alg} key and signs from now.")
        else:
            click.echo(f"{row.alg} key {row.kid} is published and signs from {_when(row.activates_at)}; "
                       "the current key signs until then.")
    if immediate:
        seconds = current_app.config["DISCOVERY_CACHE_SECONDS"]
        click.echo(f"Every worker re-reads the keys before it signs again (this waited SIGNING_KEY_RELOAD_SECONDS, "
                   f"{current_app.config['SIGNING_KEY_RELOAD_SECONDS']} s): only the new keys sign now.")
        click.echo("Tokens in flight signed by the old keys are refused here from now on (clients must refresh or sign "
                   "in again); relying parties that cached the JWKS may refuse new tokens for up to {s} s, and resource "
                   "servers that cached the JWKS still accept tokens signed by the old keys for up to {s} s (forged ones "
                   "too): have them fetch it again now.".format(s=seconds))


@keys_cli.command("reencrypt")
@json_option
@requires_settings("KEY_ENCRYPTION_KEY")  # first: before the schema is created or upgraded
@with_schema
def keys_reencrypt(as_json):
    """Encrypt every stored key and authenticator app secret under the first KEY_ENCRYPTION_KEY
    (after a new one is put first)."""
    try:
        count, secrets = keys.reencrypt()
    except key_encryption.UndecryptableKey as err:
        raise click.ClickException(f"{err}; nothing was changed") from None
    _report(as_json, f"Re-encrypted {count} signing keys and {secrets} authenticator app secrets under the first "
            "KEY_ENCRYPTION_KEY.", reencrypted=count, totp_secrets=secrets)

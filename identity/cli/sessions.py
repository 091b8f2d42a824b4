"""A user's browser sessions and app grants: list and end them."""

import json

import click
from flask.cli import AppGroup

from ..services import devices
from .common import with_schema, _when, _user_id


sessions_cli = AppGroup("sessions", help="List and end a user's browser sessions and app grants.")


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
        ended = devices.end_everything(user_id, by="operator")
    else:
        ended = [devices.end_entry(user_id, entry_id, by="operator")]
    if as_json:
        click.echo(json.dumps({"user": username, "ended": [e.id for e in ended]}))
    else:
        click.echo(f"Ended {len(ended)} session(s) and grant(s) of {username}.")

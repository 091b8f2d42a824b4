"""Seeding, the audit log, the purge and the back-channel logout queue."""

import json

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import IntegrityError

from ..services import audit, purge
from ..services.seed import apply_seed, load_seed
from ..services.logout_delivery import deliver_due
from .common import with_schema, _when, json_option


@click.command("seed")
@click.argument("file", type=click.File("rb"))  # decoded by load_seed: a file that is not UTF-8 is one line
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
    text = file.read()
    data = load_seed(text)
    try:
        report = apply_seed(data, reset_passwords=reset_passwords)
    except IntegrityError:  # another seed or command committed the same rows first: redo against what it wrote,
        # checked against it too (an address another user was given meanwhile is refused as one they had before)
        report = apply_seed(load_seed(text), reset_passwords=reset_passwords)
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


audit_cli = AppGroup("audit", help="Read the security audit log.")


@audit_cli.command("tail")
@click.option("-n", "--lines", default=20, show_default=True, type=click.IntRange(min=1), help="How many events.")
@with_schema
def audit_tail(lines):
    """Print the newest security events, oldest first, one JSON object a line."""
    for e in audit.tail(min(lines, 2**31 - 1)):  # a LIMIT the databases take (more than any log holds)
        click.echo(json.dumps({"at": _when(e.at), "event": e.event, "user_id": e.user_id,
                               "client_id": e.client_id, "ip": e.ip, "detail": e.detail}))


@click.command("purge")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
@with_appcontext
@with_schema
def purge_command(as_json):
    """Remove expired codes and tokens, ended sessions and old audit events (docs/deployment.md, Purge and retention)."""
    removed = purge.purge_by_operator()
    if as_json:
        click.echo(json.dumps(removed))
    else:
        click.echo("Purged: " + ", ".join(f"{kind} {count}" for kind, count in removed.items()) + ".")


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

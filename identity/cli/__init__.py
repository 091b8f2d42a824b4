"""The operator's commands (`flask --app app ...`), a module per group: seed, audit, purge and the
logout queue (operations.py), clients, users, scopes, keys, sessions; what they share is in common.py."""

from flask import Flask

from .clients import clients_cli
from .common import requires_settings
from .keys import keys_cli
from .operations import audit_cli, logout_deliveries_cli, purge_command, seed_command
from .scopes import scopes_cli
from .sessions import sessions_cli
from .users import users_cli

__all__ = ["init_app", "requires_settings"]


def init_app(app: Flask) -> None:
    for command in (seed_command, clients_cli, users_cli, scopes_cli, keys_cli, audit_cli, sessions_cli,
                    purge_command, logout_deliveries_cli):
        app.cli.add_command(command)

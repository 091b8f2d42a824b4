"""The API scopes: list, add, remove."""

import json

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from ..errors import ValidationFailed
from ..services.input_schemas import ApiScopeSchema, field_errors
from ..services import resources
from .common import with_schema, _report, json_option, json_list_option


scopes_cli = AppGroup("scopes", help="List, add and remove API scopes.")


@scopes_cli.command("list")
@json_list_option
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

"""What every command shares: the schema check, settings a command needs, one-line results and --json."""

import functools
import json
import sys
from datetime import datetime, timezone

import click
from flask import current_app
from sqlalchemy.exc import DBAPIError, OperationalError

from ..config import startup
from ..services.schema import ensure_schema
from ..errors import IdentityError, ValidationFailed
from ..extensions import db
from ..services import accounts


def with_schema(fn=None, *, standard_resources: bool = True):
    """Create or upgrade the schema before the command runs; turn domain errors into messages."""
    if fn is None:
        return functools.partial(with_schema, standard_resources=standard_resources)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _refuse_undecodable(kwargs)
        try:  # the command's first contact with the database
            db.engine.connect().close()
        except OperationalError as err:
            raise click.ClickException(f"database unreachable: {_reason(err)}; check FLASK_SQLALCHEMY_DATABASE_URI") from None
        try:
            ensure_schema(standard_resources=standard_resources)
            return fn(*args, **kwargs)
        except DBAPIError as err:  # a lock or statement timeout, the server gone, a write refused: one line too,
            # never SQLAlchemy's text, which lists the statement's values (a new user's password hash)
            raise click.ClickException(f"database error: {_reason(err)}") from None
        except ValidationFailed as err:
            raise click.ClickException("; ".join(f"{where}: {msg}" for where, msgs in err.errors.items() for msg in msgs))
        except IdentityError as err:
            raise click.ClickException(str(err))

    return wrapper


def _refuse_undecodable(params: dict) -> None:
    """An argument whose bytes were not UTF-8 reaches the command with lone surrogates (Python's
    "surrogateescape" for sys.argv), which no database takes: one line naming it, before anything."""
    for name, value in params.items():
        for text in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as err:
                    byte = ord(text[err.start]) - 0xDC00 if 0xDC80 <= ord(text[err.start]) <= 0xDCFF else None
                    shown = f"byte {byte:#04x}" if byte is not None else f"character {text[err.start]!r}"
                    raise click.ClickException(f"{name.replace('_', '-')}: not UTF-8 text ({shown} at offset {err.start})") from None


def _reason(err: DBAPIError) -> str:
    """The driver's first line (it names host and port, never the URI's password)."""
    return (str(err.orig or err).strip().splitlines() or ["unknown"])[0]


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
json_list_option = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON list.")


def _read_password(prompt: bool) -> str:
    """Read a password from a prompt (terminal) or the first line of standard input; never argv."""
    if sys.stdin.isatty() and prompt:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException("no password on standard input")
    return line.rstrip("\r\n")


def _user_id(username: str) -> int:
    """The id of the user a command names; NotFound, its read ended, when there is none."""
    return accounts.existing_user(username).id

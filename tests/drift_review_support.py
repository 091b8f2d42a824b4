"""Helpers for tests/test_drift_review.py: the operator changes a client while grants are live."""

import json

from sqlalchemy import select

from conftest import FLOW_CLIENTS
from identity.extensions import db
from identity.models import AuthorizationCode


def flow_client(client_id: str, **changes) -> dict:
    """The whole seed entry of a FLOW_CLIENTS client, with `changes` (a seed entry is the whole client)."""
    entry = next(c for c in FLOW_CLIENTS["clients"] if c["client_id"] == client_id)
    return {**entry, **changes}


def apply_seed_file(runner, tmp_path, *clients) -> None:
    """`flask seed FILE` with these client entries, as an operator applies a new seed."""
    path = tmp_path / "drift-seed.json"
    path.write_text(json.dumps({"clients": list(clients)}))
    result = runner.invoke(args=["seed", str(path)])
    assert result.exit_code == 0, result.output


def code_row(app, client_id: str) -> AuthorizationCode:
    with app.app_context():
        return db.session.scalars(select(AuthorizationCode).where(AuthorizationCode.client_id == client_id)).one()

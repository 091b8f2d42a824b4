"""The operator's surface, reviewed: the CLI, the seed file, the purge and the migrations."""

import json

import pytest
from sqlalchemy import select

from conftest import empty_database
from identity.extensions import db
from identity.models import Client
from identity.services.seed import apply_seed, load_seed

GUARDED = {"client_id": "guarded", "client_secrets": ["guarded-secret-0123456789"],
           "allowed_grant_types": ["authorization_code"], "redirect_uris": ["https://rp.example.com/cb"],
           "allowed_scopes": ["openid"], "require_mfa": True, "require_verified_email": True,
           "backchannel_logout_uri": "https://rp.example.com/bc", "backchannel_logout_session_required": True,
           "frontchannel_logout_uri": "https://rp.example.com/fc", "frontchannel_logout_session_required": True}


@pytest.fixture
def guarded(app):
    with app.app_context():
        apply_seed(load_seed(json.dumps({"clients": [GUARDED]})))
    yield app
    empty_database(app)


def client_row(app, client_id):
    with app.app_context():
        found = db.session.scalar(select(Client).where(Client.client_id == client_id))
        db.session.expunge_all()
        return found


def test_update_keeps_the_fields_it_cannot_change(guarded, runner):
    result = runner.invoke(args=["clients", "update", "guarded", "--access-token-lifetime", "900"])
    assert result.exit_code == 0, result.output
    after = client_row(guarded, "guarded")
    assert after.access_token_lifetime == 900
    assert (after.require_mfa, after.require_verified_email) == (True, True)
    assert (after.backchannel_logout_uri, after.backchannel_logout_session_required) == ("https://rp.example.com/bc", True)
    assert (after.frontchannel_logout_uri, after.frontchannel_logout_session_required) == ("https://rp.example.com/fc", True)

"""The same request on SQLite and on PostgreSQL: the same answer and the same stored state.

SQLite never enforces a VARCHAR's length, PostgreSQL refuses a value past it; SQLite serialises
writes, PostgreSQL runs them at once. Each test runs on whichever database the suite runs on
(FLASK_SQLALCHEMY_DATABASE_URI) and asserts what both must do."""

import os

import pytest
from sqlalchemy import select

from actions import AuthActions
from identity.extensions import db
from identity.models import Passkey
from parity_review_support import register_passkey
from webauthn_keys import SoftKey


@pytest.fixture
def auth(client, seeded):
    return AuthActions(client)


def test_a_passkey_whose_browser_repeats_its_transports_is_registered_with_each_once(client, auth, app):
    # transports are the browser's report, outside what the authenticator signs; py_webauthn
    # keeps every known name it is given, repeats included: 40 of them no longer fit the column
    auth.login()
    created = register_passkey(client, SoftKey(), transports=["hybrid", "internal"] * 20)
    assert created.status_code == 201, f"{created.status_code} {created.get_data(as_text=True)[:200]}"
    with app.app_context():
        stored = db.session.scalar(select(Passkey.transports))
    assert stored.split() == ["hybrid", "internal"]



def test_a_credential_id_past_webauthns_1023_bytes_is_refused_alike(client, auth, app):
    # WebAuthn (§6.1, credentialIdLength; §7.1 step 23): an id longer than 1023 bytes fails the
    # registration. SQLite stored its 1,467 base64url characters; PostgreSQL's column (1,400) refused them
    auth.login()
    key = SoftKey()
    key.credential_id = os.urandom(1100)
    created = register_passkey(client, key)
    assert created.status_code == 400, f"{created.status_code} {created.get_data(as_text=True)[:200]}"
    with app.app_context():
        assert db.session.scalar(select(Passkey.id)) is None
    longest = SoftKey()
    longest.credential_id = os.urandom(1023)  # the longest WebAuthn allows: registered on both
    assert register_passkey(client, longest).status_code == 201

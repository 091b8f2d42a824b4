"""Helpers for tests/test_parity_review.py: the same request on SQLite and on PostgreSQL."""

import json
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from app import create_app
from conftest import close_connections, csrf_token, make_config
from identity.services.schema import ensure_schema

from webauthn_keys import SoftKey
from workers import drop_database

ORIGIN, RP_ID = "https://localhost", "localhost"


def registration_with(key: SoftKey, challenge: str, *, transports: list[str]) -> str:
    """The software authenticator's answer to navigator.credentials.create(), with the
    `transports` the browser reports (outside what the authenticator signs)."""
    answer = json.loads(key.registration(challenge, origin=ORIGIN, rp_id=RP_ID))
    answer["response"]["transports"] = transports
    return json.dumps(answer)


def register_passkey(client, key: SoftKey, *, transports: list[str] | None = None, name: str = "Laptop"):
    """POST /account/mfa/passkeys for the signed-in user, as passkeys.js does."""
    csrf = csrf_token(client.get("/account/mfa").get_data(as_text=True))
    options = client.post("/account/mfa/passkeys/options", headers={"X-CSRFToken": csrf})
    assert options.status_code == 200, options.get_data(as_text=True)
    challenge = options.get_json()["challenge"]
    credential = (registration_with(key, challenge, transports=transports) if transports is not None
                  else key.registration(challenge, origin=ORIGIN, rp_id=RP_ID))
    return client.post("/account/mfa/passkeys", headers={"X-CSRFToken": csrf},
                       json={"credential": credential, "name": name})


@contextmanager
def collated_database(database_uri: str, suffix: str = "icu"):
    """A PostgreSQL database beside the suite's, made with ICU's English collation (what
    `createdb` gives on a host whose locale is en_US.UTF-8, as most are; the suite's own is
    C.UTF-8, which sorts as SQLite does), migrated; dropped afterwards. Yields its URI."""
    url = make_url(database_uri)
    name = f"{url.database}_{suffix}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            drop_database(conn, f'"{name}"')
            try:
                conn.execute(text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu "
                                  "ICU_LOCALE 'en' LOCALE 'C.UTF-8'"))
            except DBAPIError as err:  # a server before 15, or built without ICU
                pytest.skip(f"no ICU-collated database here: {str(err.orig).splitlines()[0]}")
        uri = url.set(database=name).render_as_string(hide_password=False)
        app = create_app(make_config(uri))
        with app.app_context():
            ensure_schema()
        close_connections(app)
        yield uri
    finally:
        with admin.connect() as conn:
            drop_database(conn, f'"{name}"')
        admin.dispose()

"""Helpers for tests/test_parity_review.py: the same request on SQLite and on PostgreSQL."""

import json
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, insert, make_url, text
from sqlalchemy.exc import DBAPIError

from app import create_app
from conftest import close_connections, csrf_token, make_config
from identity.services.schema import ensure_schema

from webauthn_keys import SoftKey

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
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
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
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


#: past PostgreSQL's 65,535 parameters a statement (psycopg refuses more; SQLite's limit is its build's)
PAST_THE_PARAMETER_LIMIT = 66_000


def many_redeemed_codes(user_id: int, count: int, stamp: int, client_id: str = "spa") -> None:
    """`count` codes of the user's, redeemed (each issued an access token), kept as tombstones: a
    monitoring account that signs in through the code flow every second keeps 86,400 of them
    (CODE_TOMBSTONE_SECONDS). In the app context; committed."""
    from identity.extensions import db
    from identity.models import AuthorizationCode

    db.session.execute(insert(AuthorizationCode), [
        {"code_hash": f"{i:064x}", "client_id": client_id, "user_id": user_id, "session_id": None,
         "redirect_uri": "http://127.0.0.1:8080/callback", "response_type": "code", "scope": "openid", "nonce": None,
         "code_challenge": None, "code_challenge_method": None, "auth_time": stamp, "created_at": stamp,
         "expires_at": stamp + 60, "consumed_at": stamp, "family_id": f"family-{i}", "issued_jti": f"jti-{i}",
         "front_channel_jti": None, "access_expires_at": stamp + 3600, "amr": "pwd"} for i in range(count)])
    db.session.commit()


def many_live_sessions(user_id: int, count: int, stamp: int) -> None:
    """`count` unrevoked browser sessions of the user's (a probe that signs in and drops its
    cookie), in the app context; committed."""
    from identity.extensions import db
    from identity.models import UserSession

    db.session.execute(insert(UserSession), [
        {"sid": f"{i:064x}", "public_sid": f"public-{i}", "user_id": user_id, "auth_time": stamp, "created_at": stamp,
         "last_seen_at": stamp, "revoked_at": None, "client_id": None, "user_agent": None, "ip_address": None,
         "amr": "pwd"} for i in range(count)])
    db.session.commit()

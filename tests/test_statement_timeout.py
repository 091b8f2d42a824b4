"""DATABASE_STATEMENT_TIMEOUT_SECONDS: a serving process's PostgreSQL statements are bounded, and
the options the database URI already carries (a search_path) are kept beside the timeout."""

import os

import pytest
from sqlalchemy import text

from app import create_app
from identity.extensions import db

POSTGRES = os.environ.get("FLASK_SQLALCHEMY_DATABASE_URI", "")
BASE = {"SECRET_KEY": "statement-timeout-test-key", "ISSUER": "http://localhost", "TESTING": True,
        "ENVIRONMENT": "development"}


def engine_options(uri: str, **config) -> dict:
    app = create_app({**BASE, "SQLALCHEMY_DATABASE_URI": uri, **config})
    return app.config["SQLALCHEMY_ENGINE_OPTIONS"]


def test_the_uris_options_are_kept_beside_the_timeout():
    uri = "postgresql+psycopg://u:p@db.invalid:5432/identity?options=-csearch_path%3Dtenant_a"
    options = engine_options(uri, DATABASE_STATEMENT_TIMEOUT_SECONDS=7)["connect_args"]["options"]
    assert "-csearch_path=tenant_a" in options and "-c statement_timeout=7000" in options


def test_an_operators_own_timeout_wins_and_zero_means_none():
    uri = "postgresql+psycopg://u:p@db.invalid:5432/identity"
    mine = {"connect_args": {"options": "-c statement_timeout=1234"}}
    assert engine_options(uri, SQLALCHEMY_ENGINE_OPTIONS=mine)["connect_args"]["options"] == "-c statement_timeout=1234"
    assert "connect_args" not in engine_options(uri, DATABASE_STATEMENT_TIMEOUT_SECONDS=0)


def test_a_timeout_under_a_millisecond_is_one_millisecond_not_none():
    """0.0004 s was written as statement_timeout=0, which PostgreSQL reads as no timeout at all:
    the smallest bound an operator can ask for turned the bound off."""
    uri = "postgresql+psycopg://u:p@db.invalid:5432/identity"
    options = engine_options(uri, DATABASE_STATEMENT_TIMEOUT_SECONDS=0.0004)["connect_args"]["options"]
    assert "-c statement_timeout=1" == options


@pytest.mark.skipif(not POSTGRES.startswith("postgresql"), reason="needs the suite's PostgreSQL database")
def test_a_serving_connection_has_the_timeout_and_the_uris_search_path():
    schema = "bounded_statements_test"
    with create_app({**BASE, "SQLALCHEMY_DATABASE_URI": POSTGRES}).app_context():
        db.session.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        db.session.commit()
    separator = "&" if "?" in POSTGRES else "?"
    uri = f"{POSTGRES}{separator}options=-csearch_path%3D{schema}"
    app = create_app({**BASE, "SQLALCHEMY_DATABASE_URI": uri, "DATABASE_STATEMENT_TIMEOUT_SECONDS": 9})
    with app.app_context():
        assert db.session.execute(text("SHOW statement_timeout")).scalar() == "9s"
        assert db.session.execute(text("SHOW search_path")).scalar() == schema
        db.session.execute(text(f"DROP SCHEMA {schema}"))
        db.session.commit()

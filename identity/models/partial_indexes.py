"""The partial indexes, declared apart from the tables.

An index's `sqlite_where` / `postgresql_where` makes SQLAlchemy load both dialects to check
them, when the models are imported: every SQLite worker would carry the PostgreSQL dialect
(2.4 MiB, 0.04 s of start-up) it never uses. The migrations create these indexes; what compares
the models with the schema (alembic's autogenerate in migrations/env.py, tests/test_cli.py)
calls `declare()` first. Queries need no declaration: the databases pick the indexes.
"""

from sqlalchemy import Index, text

from .grant import AuthorizationCode

_declared: list[Index] = []


def _partial(name: str, *columns, where: str) -> Index:
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


def declare() -> None:
    """Add the partial indexes to the tables' metadata, once."""
    if _declared:
        return
    _declared.extend([
        _partial("ix_authorization_codes_issued_jti", AuthorizationCode.issued_jti, where="issued_jti IS NOT NULL"),
        _partial("ix_authorization_codes_front_channel_jti", AuthorizationCode.front_channel_jti,
                 where="front_channel_jti IS NOT NULL"),
    ])

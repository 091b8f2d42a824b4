"""Whole tables listed for the operator (`users list`, `clients list`, `scopes list`), in one
order on every database: by the code points of a text column, as SQLite sorts (BINARY) and as a
PostgreSQL database made with a C collation does. An ORDER BY on PostgreSQL follows the
database's collation instead, which `createdb` takes from the host's locale (en_US.UTF-8 on
most): it put `api` before `Web` and `éva` before `fred`, the same rows in another order than on
SQLite, and than the grants page (services/consent.py), which sorts in Python. The lists are read
whole anyway, so they are sorted here rather than with a COLLATE each dialect spells its own way."""

from sqlalchemy import select

from ..extensions import db


def by_code_point(model, column) -> list:
    """Every row of `model`, by the code points of `column` (unique, so no ties)."""
    return sorted(db.session.scalars(select(model)), key=lambda row: getattr(row, column.key))

"""The ids of the tables every request may add to are BIGINT on PostgreSQL: authorization codes,
refresh tokens, browser sessions, the clients they issued to, logout deliveries, one-time account
tokens and audit events. The purge removes their rows but a sequence never gives an id again, and
an INTEGER one ends at 2**31 - 1: a year of 68 refreshes a second, and every refresh after it
failed. Each table is rewritten (its id and indexes), holding it locked meanwhile: run it when
traffic is low. SQLite's ids are its 64-bit rowids already: nothing changes there.

The downgrade makes them INTEGER again, and fails ('integer out of range') once a table holds an
id past 2**31 - 1.

Revision ID: 5c5208cca771
Revises: 38e0f4b30e8c
Create Date: 2026-12-05 23:41:27.189497

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5c5208cca771'
down_revision = '38e0f4b30e8c'
branch_labels = None
depends_on = None

TABLES = ("authorization_codes", "refresh_tokens", "user_sessions", "session_clients", "logout_deliveries",
          "account_tokens", "audit_events")


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE {kind}")
        # the sequence's own type bounds it too (its maximum follows the type's)
        op.execute(f"DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS {kind}', "
                   f"pg_get_serial_sequence('{table}', 'id')); END $$")


def upgrade():
    _retype("bigint")


def downgrade():
    _retype("integer")

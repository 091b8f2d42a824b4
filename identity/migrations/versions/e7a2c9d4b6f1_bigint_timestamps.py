"""Every timestamp column (epoch seconds) is BIGINT on PostgreSQL: INTEGER ends at 2**31 - 1,
2038-01-19, and a time after it failed its write ('integer out of range', a 503): from 2028 a
10-year refresh token's expiry, from 2038 every request that stores its time. Each table is
rewritten once (all its columns in one ALTER TABLE, its indexes rebuilt), holding it locked
meanwhile: run it when traffic is low. SQLite's INTEGER is 64 bits already: nothing changes there.

The downgrade makes them INTEGER again, and fails ('integer out of range') once a table holds a
time past 2038-01-19.

Revision ID: e7a2c9d4b6f1
Revises: 5c5208cca771
Create Date: 2026-12-06 00:55:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e7a2c9d4b6f1'
down_revision = '5c5208cca771'
branch_labels = None
depends_on = None

COLUMNS = {
    "account_tokens": ("created_at", "expires_at", "used_at"),
    "audit_events": ("at",),
    "authorization_codes": ("auth_time", "created_at", "expires_at", "consumed_at", "access_expires_at"),
    "clients": ("disabled_at", "created_at"),
    "consents": ("created_at",),
    "logout_deliveries": ("created_at", "next_attempt_at", "leased_until", "delivered_at", "gave_up_at"),
    "passkeys": ("created_at", "last_used_at"),
    "recovery_codes": ("created_at", "used_at"),
    "refresh_tokens": ("auth_time", "issued_at", "expires_at", "consumed_at", "revoked_at"),
    "revoked_access_tokens": ("expires_at",),
    "session_clients": ("created_at",),
    "signing_keys": ("created_at", "activates_at", "retired_at", "revoked_at"),
    "standalone_access_tokens": ("expires_at", "issued_at"),
    "totp_factors": ("created_at", "confirmed_at"),
    "user_sessions": ("auth_time", "created_at", "last_seen_at", "revoked_at"),
    "users": ("password_changed_at", "locked_until", "created_at", "disabled_at"),
}


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        op.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} TYPE {kind}" for c in columns))


def upgrade():
    _retype("bigint")


def downgrade():
    _retype("integer")

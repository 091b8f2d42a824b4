"""refresh_tokens: (user_id, family_id) in place of the partial index of live tokens by user. A
partial index on consumed_at IS NULL made every rotation's UPDATE of consumed_at touch an
indexed column, so PostgreSQL could not make it a heap-only (HOT) update and wrote the new row
version into every index (store/refresh_families.py)

Revision ID: e5b9d3f7a1c6
Revises: c3e7a1d5f9b4
Create Date: 2026-12-05 18:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5b9d3f7a1c6'
down_revision = 'c3e7a1d5f9b4'
branch_labels = None
depends_on = None

LIVE = "consumed_at IS NULL AND revoked_at IS NULL"


# Each builds its new index before it drops the old one. On PostgreSQL a DROP INDEX holds an ACCESS
# EXCLUSIVE lock on the table until its transaction commits: dropped first, every read of
# refresh_tokens by the servers still running waited for the whole build (2 s at 2,000,000
# tokens); a build alone blocks their writes (SHARE), not their reads.


# The listings now take a family's newest token by issued_at as its live one. A rotation stamped
# the successor with its own instance's clock, so one whose clock was behind the instance that
# issued the old token stored the live token as the older of the two: that grant would be listed
# nowhere, and "sign out everywhere" would leave it working. Such live tokens take their family's
# newest issued_at (a second or so later; rotations now stamp max(now, the old token's)). First,
# under a row lock only, before the index build's SHARE lock and the DROP's ACCESS EXCLUSIVE one.
_NEWEST_OF_FAMILY = "(SELECT max(o.issued_at) FROM refresh_tokens o WHERE o.family_id = refresh_tokens.family_id)"
_REPAIR_SKEWED_SUCCESSORS = (f"UPDATE refresh_tokens SET issued_at = {_NEWEST_OF_FAMILY} "
                             f"WHERE {LIVE} AND issued_at < {_NEWEST_OF_FAMILY}")


def upgrade():
    op.execute(_REPAIR_SKEWED_SUCCESSORS)
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_tokens_user_family', ['user_id', 'family_id'], unique=False)
        batch_op.drop_index('ix_refresh_tokens_live_user')


def downgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_tokens_live_user', ['user_id', 'issued_at'], unique=False,
                              sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
        batch_op.drop_index('ix_refresh_tokens_user_family')

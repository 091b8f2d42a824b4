"""Indexes on refresh_tokens that keep a grant's rotated tokens out of per-request reads: the
live tokens of a user by issued_at (partial: not consumed, not revoked), (family_id, issued_at) in place of
family_id, and access_token_jti. Every refresh keeps the token it replaces until it expires,
and listing a user's grants visited each of them (277 ms at 200,000 on SQLite)

Revision ID: c3e7a9d1f5b4
Revises: b9d4f6a8c2e1
Create Date: 2026-12-05 15:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3e7a9d1f5b4'
down_revision = 'b9d4f6a8c2e1'
branch_labels = None
depends_on = None

LIVE = "consumed_at IS NULL AND revoked_at IS NULL"


def upgrade():  # built before the old one is dropped: see e5b9d3f7a1c6
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_tokens_family_issued', ['family_id', 'issued_at'], unique=False)
        batch_op.create_index('ix_refresh_tokens_access_token_jti', ['access_token_jti'], unique=False)
        batch_op.create_index('ix_refresh_tokens_live_user', ['user_id', 'issued_at'], unique=False,
                              sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))
        batch_op.drop_index('ix_refresh_tokens_family_id')


def downgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_tokens_family_id', ['family_id'], unique=False)
        batch_op.drop_index('ix_refresh_tokens_live_user')
        batch_op.drop_index('ix_refresh_tokens_access_token_jti')
        batch_op.drop_index('ix_refresh_tokens_family_issued')

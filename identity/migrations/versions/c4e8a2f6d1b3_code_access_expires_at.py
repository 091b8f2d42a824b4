"""authorization_codes.access_expires_at: when the latest access token a code led to expires, so
the grants page judges it by its own expiry, not by its client's access_token_lifetime now

Revision ID: c4e8a2f6d1b3
Revises: d4f8b2a6c9e3
Create Date: 2026-12-05 15:10:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c4e8a2f6d1b3'
down_revision = 'd4f8b2a6c9e3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_expires_at', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_column('access_expires_at')

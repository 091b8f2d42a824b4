"""standalone_access_tokens.issued_at: when the token was issued, so the grants page compares it
with the user's last password change itself, not its expiry less its client's lifetime now

Revision ID: d7f3b9e1a5c8
Revises: c4e8a2f6d1b3
Create Date: 2026-12-05 15:25:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd7f3b9e1a5c8'
down_revision = 'c4e8a2f6d1b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('standalone_access_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issued_at', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('standalone_access_tokens', schema=None) as batch_op:
        batch_op.drop_column('issued_at')

"""users.bearer_cached_until: the lease a worker takes before reusing a bearer check

Revision ID: 3b1f0c2d9a47
Revises: 06e791e9e23d
Create Date: 2026-11-26 17:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3b1f0c2d9a47'
down_revision = '06e791e9e23d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bearer_cached_until', sa.Float(), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('bearer_cached_until')

"""standalone_access_tokens.password_version: the user's password version an access token of no
family (the implicit flow, the password grant without offline_access) was issued under, the
version its `pwv` claim carries, so the connected apps page judges it as the bearer check does
(services/consent.py): `users disable` moves the version on without changing the password.

Rows stored before this revision keep NULL, judged as before (by the time of the last password
change); they expire within an access token's lifetime.

Revision ID: a3c8e5f1b7d2
Revises: 9d3e6b1f4a72
Create Date: 2026-12-08 00:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3c8e5f1b7d2'
down_revision = '9d3e6b1f4a72'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('standalone_access_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_version', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('standalone_access_tokens', schema=None) as batch_op:
        batch_op.drop_column('password_version')

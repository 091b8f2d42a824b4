"""passkeys.sign_count is a BIGINT: WebAuthn's signCount is an unsigned 32-bit number, and
PostgreSQL's INTEGER stops at 2**31 - 1, so an authenticator whose count had passed it (one global
counter used for years, or one that starts high) could be neither registered nor used: every
sign-in with it failed with "integer out of range". SQLite stored such counts already; its table is
rebuilt so the column's declared type matches the model.

The downgrade lowers counts above 2**31 - 1 to it (the clone check then accepts any count above
that: what the authenticator presents next is higher still) before the column is INTEGER again.

Revision ID: 38e0f4b30e8c
Revises: b8d4f1a6c3e9
Create Date: 2026-12-05 23:36:55.053174

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '38e0f4b30e8c'
down_revision = 'b8d4f1a6c3e9'
branch_labels = None
depends_on = None


_INT_MAX = 2**31 - 1


def upgrade():
    with op.batch_alter_table('passkeys') as batch:
        batch.alter_column('sign_count', type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade():
    op.execute(sa.text("UPDATE passkeys SET sign_count = :most WHERE sign_count > :most").bindparams(most=_INT_MAX))
    with op.batch_alter_table('passkeys') as batch:
        batch.alter_column('sign_count', type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)

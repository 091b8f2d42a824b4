"""An index on authorization_codes (client_id, nonce): the nonce-replay check at the
authorization endpoint looked the nonce up among every unexpired code through the expires_at
index, a scan of every code of the last 5 minutes (3.8 ms on SQLite at 10,500 codes: 35
sign-ins/s), on every authorization request with a nonce

Revision ID: b9d4f6a8c2e1
Revises: d7e1a9c3b5f2
Create Date: 2026-12-03 17:45:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b9d4f6a8c2e1'
down_revision = 'd7e1a9c3b5f2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.create_index('ix_authorization_codes_client_nonce', ['client_id', 'nonce'], unique=False)


def downgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_authorization_codes_client_nonce')

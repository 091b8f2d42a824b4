"""totp_factors, recovery_codes; the sign-in methods (amr) of sessions, codes and refresh
tokens; clients.require_mfa

A session remembers how its person signed in (RFC 8176 method names, space-separated), and the
codes and refresh tokens issued in it carry that on, so the ID and access tokens can say it in
`amr` and `acr`. Rows from before hold NULL, read as a password sign-in ("pwd").

Revision ID: e5a9c3d7b1f2
Revises: c4d8e2f1a6b3
Create Date: 2026-12-03 09:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a9c3d7b1f2'
down_revision = 'c4d8e2f1a6b3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'totp_factors',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('secret_encrypted', sa.String(length=512), nullable=False),
        sa.Column('created_at', sa.Integer(), nullable=False),
        sa.Column('confirmed_at', sa.Integer(), nullable=True),
        sa.Column('last_step', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id'),
    )
    op.create_table(
        'recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.Integer(), nullable=False),
        sa.Column('used_at', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index('ix_recovery_codes_user_hash', ['user_id', 'code_hash'], unique=True)
    for table in ('user_sessions', 'authorization_codes', 'refresh_tokens'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('amr', sa.String(length=64), nullable=True))
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('require_mfa', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('require_mfa')
    for table in ('refresh_tokens', 'authorization_codes', 'user_sessions'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('amr')
    op.drop_table('recovery_codes')
    op.drop_table('totp_factors')

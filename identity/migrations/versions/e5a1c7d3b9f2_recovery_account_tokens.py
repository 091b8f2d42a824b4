"""account_tokens: one-time links sent by mail (password reset, email verification)

Revision ID: e5a1c7d3b9f2
Revises: c4d8e2f1a6b3
Create Date: 2026-12-03 09:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a1c7d3b9f2'
down_revision = 'c4d8e2f1a6b3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'account_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('purpose', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=True),
        sa.Column('created_at', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.Integer(), nullable=False),
        sa.Column('used_at', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_account_tokens_expires_at', ['expires_at'], unique=False)
        batch_op.create_index('ix_account_tokens_user_purpose', ['user_id', 'purpose', 'created_at'], unique=False)


def downgrade():
    op.drop_table('account_tokens')

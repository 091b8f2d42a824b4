"""authorization_codes.front_channel_jti, an index on authorization_codes.family_id, and
standalone_access_tokens

The access token a hybrid response (`code token`, `code id_token token`) hands out in the
front channel is recorded on its code, so revoking the code's family (a replayed code, a
revoked refresh token, an app revoked on the grants page) revokes it too. Access tokens of no
family (implicit flow, password grant without a refresh token) are recorded by jti in
standalone_access_tokens until they expire, so revoking the app revokes them.

Revision ID: c4d8e2f1a6b3
Revises: 5c2e9a7d41b8
Create Date: 2026-12-03 07:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4d8e2f1a6b3'
down_revision = '5c2e9a7d41b8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('front_channel_jti', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_authorization_codes_family_id', ['family_id'], unique=False)
    op.create_table(
        'standalone_access_tokens',
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.String(length=200), nullable=False),
        sa.Column('expires_at', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('jti'),
    )
    with op.batch_alter_table('standalone_access_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_standalone_access_tokens_expires_at', ['expires_at'], unique=False)
        batch_op.create_index('ix_standalone_access_tokens_user_client', ['user_id', 'client_id'], unique=False)


def downgrade():
    op.drop_table('standalone_access_tokens')
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_authorization_codes_family_id')
        batch_op.drop_column('front_channel_jti')

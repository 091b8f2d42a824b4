"""Partial indexes on authorization_codes issued_jti and front_channel_jti: the family of an
access token of no refresh token was looked up among every code of the user kept for a day
after its expiry (one an authorization request)

Revision ID: d4f8b2a6c9e3
Revises: c3e7a9d1f5b4
Create Date: 2026-12-05 15:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4f8b2a6c9e3'
down_revision = 'c3e7a9d1f5b4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        for column in ('issued_jti', 'front_channel_jti'):
            where = sa.text(f"{column} IS NOT NULL")
            batch_op.create_index(f'ix_authorization_codes_{column}', [column], unique=False,
                                  sqlite_where=where, postgresql_where=where)


def downgrade():
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_authorization_codes_front_channel_jti')
        batch_op.drop_index('ix_authorization_codes_issued_jti')

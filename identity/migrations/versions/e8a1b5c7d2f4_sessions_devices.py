"""user_sessions.client_id, user_agent, ip_address and refresh_tokens.user_agent, ip_address

The sessions and devices page (and GET /localapi/sessions) tells a person where they are signed
in: the client a browser session was started for, and for each session and app grant the user
agent (bounded) and the address (truncated to /24 or /48) seen when it was created or last
refreshed. Rows written before this revision have none of them and show as unknown.

Revision ID: e8a1b5c7d2f4
Revises: c4d8e2f1a6b3
Create Date: 2026-12-03 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e8a1b5c7d2f4'
down_revision = 'c4d8e2f1a6b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_id', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('ip_address', sa.String(length=64), nullable=True))
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_agent', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('ip_address', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_column('ip_address')
        batch_op.drop_column('user_agent')
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_column('ip_address')
        batch_op.drop_column('user_agent')
        batch_op.drop_column('client_id')

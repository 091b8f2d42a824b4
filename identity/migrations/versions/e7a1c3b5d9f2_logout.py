"""Back-channel and front-channel logout: the clients' logout URIs, which clients each browser
session issued to (session_clients), and the durable queue of logout tokens (logout_deliveries)

Revision ID: e7a1c3b5d9f2
Revises: e5f6a7b8c9d0
Create Date: 2026-12-03 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e7a1c3b5d9f2'
down_revision = 'e5f6a7b8c9d0'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backchannel_logout_uri', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('backchannel_logout_session_required', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('frontchannel_logout_uri', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('frontchannel_logout_session_required', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_table(
        'session_clients',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('session_id', 'client_id', name='uq_session_clients_session_client'),
    )
    op.create_table(
        'logout_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=200), nullable=False),
        sa.Column('uri', sa.Text(), nullable=False),
        sa.Column('subject', sa.String(length=64), nullable=True),
        sa.Column('session_id', sa.String(length=64), nullable=True),
        sa.Column('reason', sa.String(length=40), nullable=False),
        sa.Column('issuer', sa.Text(), nullable=True),
        sa.Column('created_at', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.Integer(), nullable=False),
        sa.Column('leased_until', sa.Integer(), nullable=True),
        sa.Column('lease_owner', sa.String(length=32), nullable=True),
        sa.Column('delivered_at', sa.Integer(), nullable=True),
        sa.Column('gave_up_at', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('jti'),
    )
    with op.batch_alter_table('logout_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_logout_deliveries_due', ['delivered_at', 'gave_up_at', 'next_attempt_at'],
                              unique=False)


def downgrade():
    op.drop_table('logout_deliveries')
    op.drop_table('session_clients')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('frontchannel_logout_session_required')
        batch_op.drop_column('backchannel_logout_session_required')
        batch_op.drop_column('frontchannel_logout_uri')
        batch_op.drop_column('backchannel_logout_uri')

"""sessions helper: user_sessions.public_sid and last_seen_at; grants name sessions by public_sid;
refresh_tokens.expires_at and user_sessions' times indexed for the purge

Revision ID: a7c4e2d9b153
Revises: 3b1f0c2d9a47
Create Date: 2026-12-03 06:40:00.000000

Existing sessions get a fresh random public id and last_seen_at = the upgrade's time, so the
upgrade itself signs no one out for idleness (the absolute lifetime, from created_at, still
ends the old ones). Codes and refresh
tokens stored the cookie's identifier as their session_id; it is replaced by that session's
public id (NULL if the session is gone), so no table but user_sessions keeps the secret.
"""
import secrets
import time

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c4e2d9b153'
down_revision = '3b1f0c2d9a47'
branch_labels = None
depends_on = None

_SESSIONS = sa.table('user_sessions', sa.column('id', sa.Integer), sa.column('sid', sa.String),
                     sa.column('public_sid', sa.String), sa.column('created_at', sa.Integer),
                     sa.column('last_seen_at', sa.Integer))


def _rename_session_ids(source: str, target: str) -> None:
    """Point codes' and refresh tokens' session_id from one user_sessions column to the other."""
    for table in ('authorization_codes', 'refresh_tokens'):
        op.execute(
            f"UPDATE {table} SET session_id = (SELECT s.{target} FROM user_sessions s WHERE s.{source} = {table}.session_id) "
            "WHERE session_id IS NOT NULL"
        )


def upgrade():
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('public_sid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', sa.Integer(), nullable=True))
    bind = op.get_bind()
    # one executemany, not a statement a session: ADD COLUMN holds an ACCESS EXCLUSIVE lock on
    # user_sessions until the upgrade commits, and every signed-in request of a running server
    # waits for it (100,000 sessions took 32 s one by one on PostgreSQL)
    ids = bind.execute(sa.select(_SESSIONS.c.id)).scalars().all()
    if ids:
        bind.execute(_SESSIONS.update().where(_SESSIONS.c.id == sa.bindparam('row_id'))
                     .values(public_sid=sa.bindparam('new_public_sid')),
                     [{'row_id': row_id, 'new_public_sid': secrets.token_urlsafe(24)} for row_id in ids])
    bind.execute(_SESSIONS.update().values(last_seen_at=int(time.time())))
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.alter_column('public_sid', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('last_seen_at', existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint('uq_user_sessions_public_sid', ['public_sid'])
        batch_op.create_index(batch_op.f('ix_user_sessions_last_seen_at'), ['last_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_sessions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_sessions_revoked_at'), ['revoked_at'], unique=False)
    _rename_session_ids('sid', 'public_sid')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_expires_at'))
    _rename_session_ids('public_sid', 'sid')
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_revoked_at'))
        batch_op.drop_index(batch_op.f('ix_user_sessions_created_at'))
        batch_op.drop_index(batch_op.f('ix_user_sessions_last_seen_at'))
        batch_op.drop_constraint('uq_user_sessions_public_sid', type_='unique')
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('public_sid')

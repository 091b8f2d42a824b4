"""user_sessions.sid keeps the SHA-256 (hex) of the cookie's session id, not the id: whoever
reads the database (a backup, a replica, a dump) holds no one's browser session.

Every existing row's sid is replaced by its digest, so signed-in browsers stay signed in. During
a rolling upgrade, a browser that an instance of the previous release serves (it looks sessions
up by the id itself) is signed out, and so is a session such an instance starts after the
upgrade. The downgrade cannot give the ids back: it ends every live browser session (their users
sign in again; apps' refresh tokens are untouched).

Revision ID: b8d4f1a6c3e9
Revises: f6c2a8e4b0d7
Create Date: 2026-12-05 20:40:00.000000

"""
import hashlib
import time

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b8d4f1a6c3e9'
down_revision = 'f6c2a8e4b0d7'
branch_labels = None
depends_on = None

_SESSIONS = sa.table('user_sessions', sa.column('id', sa.Integer), sa.column('sid', sa.String),
                     sa.column('revoked_at', sa.Integer))


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # one statement; rows are locked, the table is not
        op.execute("UPDATE user_sessions SET sid = encode(sha256(convert_to(sid, 'UTF8')), 'hex')")
        return
    rows = bind.execute(sa.select(_SESSIONS.c.id, _SESSIONS.c.sid)).all()
    if rows:  # one executemany (SQLite has no SHA-256 of its own)
        bind.execute(_SESSIONS.update().where(_SESSIONS.c.id == sa.bindparam('row_id'))
                     .values(sid=sa.bindparam('digest')),
                     [{'row_id': row_id, 'digest': hashlib.sha256(sid.encode()).hexdigest()} for row_id, sid in rows])


def downgrade():
    bind = op.get_bind()
    bind.execute(_SESSIONS.update().where(_SESSIONS.c.revoked_at.is_(None)).values(revoked_at=int(time.time())))

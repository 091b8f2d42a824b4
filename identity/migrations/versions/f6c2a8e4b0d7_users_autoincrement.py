"""users: AUTOINCREMENT on SQLite, so a removed user's id is never given to another user (the
audit log names users by it and keeps their events after `users remove`). PostgreSQL's
sequence never gave an id twice; nothing changes there.

The table is rebuilt (SQLite cannot add AUTOINCREMENT to a table): env.py turns foreign keys off
for the migration, so the rebuild deletes nothing that points at a user. The copy's largest id
starts the table's sequence; an id freed before this migration, above every id kept, may still
be given again once.

Revision ID: f6c2a8e4b0d7
Revises: e5b9d3f7a1c6
Create Date: 2026-12-05 18:45:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'f6c2a8e4b0d7'
down_revision = 'e5b9d3f7a1c6'
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table('users', recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade():
    _rebuild(True)


def downgrade():
    _rebuild(False)

"""passkeys: AUTOINCREMENT on SQLite, so a removed passkey's id is never given to another
passkey (the audit log names passkeys by it: passkey_registered, passkey_used, passkey_removed,
passkey_removal_refused; and a page's remove form posts it). SQLite gave the next passkey the
largest id plus one: the newest one removed lent its id to the next registered, anyone's, and a
stale remove form of its owner's was audited as a probe of another user's passkey (`not_yours`).
PostgreSQL's sequence never gave an id twice; nothing changes there.

The table is rebuilt (SQLite cannot add AUTOINCREMENT to a table), as the users table was
(f6c2a8e4b0d7): the copy's largest id starts the table's sequence; an id freed before this
migration, above every id kept, may still be given again once.

Revision ID: 5743972ee32a
Revises: e7a2c9d4b6f1
Create Date: 2026-12-06 08:50:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5743972ee32a'
down_revision = 'e7a2c9d4b6f1'
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table('passkeys', recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade():
    _rebuild(True)


def downgrade():
    _rebuild(False)

"""users.username_normalized and email_normalized by NFKC_Casefold (NFKC, case folded, NFKC),
not case folding alone: "café" spelled with a combining accent, or "ａｌｉｃｅ" in full-width
letters, is one key with "café" and "alice" (login_names.normalize_login)

Of two existing accounts whose keys become one, the one that has the key already (else the
older) takes it; the other keeps its old key and is named in a warning: its user name now signs
in as the first, and it signs in by its address. A user name whose key would have an @ (a
full-width "＠") keeps its old key too, and is named: new user names may not have one. So does a
name or address whose key outgrows its column (NFKC makes "㍿" four letters): new ones may not.

Revision ID: c3e7a1d5f9b4
Revises: d7f3b9e1a5c8
Create Date: 2026-12-05 14:45:00.000000

"""
import logging
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3e7a1d5f9b4'
down_revision = 'd7f3b9e1a5c8'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

_USERS = sa.table("users", sa.column("id"), sa.column("username"), sa.column("username_normalized"),
                  sa.column("email"), sa.column("email_normalized"))


_KEY_LENGTHS = {"username_normalized": 150, "email_normalized": 320}  # the columns' VARCHAR lengths


def _nfkc_casefold(value: str) -> str:  # login_names.normalize_login as of this revision
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value.strip()).casefold())


def _casefold(value: str) -> str:  # the rule before it
    return value.strip().casefold()


def _rekey(key) -> None:
    """Set both key columns to key(value). A row moves only to a key no row holds (in id order),
    so no statement meets the unique index, and a row whose new key is another's keeps its own."""
    conn = op.get_bind()
    rows = conn.execute(sa.select(_USERS.c.id, _USERS.c.username, _USERS.c.username_normalized,
                                  _USERS.c.email, _USERS.c.email_normalized).order_by(_USERS.c.id)).all()
    for value, column in (("username", "username_normalized"), ("email", "email_normalized")):
        held = {getattr(row, column) for row in rows if getattr(row, column) is not None}
        for row in rows:
            old, source = getattr(row, column), getattr(row, value)
            if old is None or source is None or key(source) == old:
                continue
            new = key(source)
            if column == "username_normalized" and "@" in new:  # a full-width @: the key of an address
                log.warning("users.%s of user id %s stays %r: %r would name an address; rename the user",
                            column, row.id, old, new)
                continue
            if len(new) > _KEY_LENGTHS[column]:  # "㍿" is four letters: not a key its column holds
                log.warning("users.%s of user id %s stays %r: %r is longer than %s characters; rename the user",
                            column, row.id, old, new, _KEY_LENGTHS[column])
                continue
            if new in held:
                log.warning("users.%s of user id %s stays %r: another user has %r; rename one of them",
                            column, row.id, old, new)
                continue
            conn.execute(sa.update(_USERS).where(_USERS.c.id == row.id).values({column: new}))
            held.discard(old)
            held.add(new)


def upgrade():
    _rekey(_nfkc_casefold)


def downgrade():
    _rekey(_casefold)

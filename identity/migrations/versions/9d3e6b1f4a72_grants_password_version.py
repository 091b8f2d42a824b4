"""authorization_codes.password_version, refresh_tokens.password_version: the user's password
version a code was minted under and a refresh token was issued under (the version its access
token carries). A code or refresh token whose version is not the user's any more is refused
(services/issued_grants.py): a password change, reset or disable ends them even when they were
stored while it ran (an insert its lock on the user's row does not hold off: a code minted with a
copy of the changing browser's cookie, a refresh token of a code redeemed meanwhile), which its
revocation could not see.

Rows stored before this revision keep NULL, judged as before (as are rows an instance of the
previous release writes during a rolling upgrade): a fill from the users' current versions would
change no answer (NULL is taken as the current version), and would rewrite both tables while
ADD COLUMN's lock is held. A refresh token the previous release let outlive a password change
(the race this revision closes) cannot be told apart from one issued just after it, so none is
ended here: `flask users set-password` (or a reset) ends a suspect user's grants.

Revision ID: 9d3e6b1f4a72
Revises: 5743972ee32a
Create Date: 2026-12-07 17:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9d3e6b1f4a72'
down_revision = '5743972ee32a'
branch_labels = None
depends_on = None

_TABLES = ('authorization_codes', 'refresh_tokens')


def upgrade():
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('password_version', sa.Integer(), nullable=True))


def downgrade():
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('password_version')

"""authorization_codes.password_version, refresh_tokens.password_version: the user's password
version a code was minted under and a refresh token was issued under (the version its access
token carries). A code or refresh token whose version is not the user's any more is refused
(services/issued_grants.py): a password change, reset or disable ends them even when they were
stored while it ran (an insert its lock on the user's row does not hold off: a code minted with a
copy of the changing browser's cookie, a refresh token of a code redeemed meanwhile), which its
revocation could not see.

Rows stored before this revision take their user's current version: they were ended already if
a change came since they were stored (it revoked or expired them). A row stored without one (by
an instance of the previous release, during a rolling upgrade) is judged as before.

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
        op.execute(f"UPDATE {table} SET password_version = "
                   f"(SELECT users.password_version FROM users WHERE users.id = {table}.user_id)")


def downgrade():
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('password_version')

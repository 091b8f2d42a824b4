"""signing_keys: staged rotation (generation, activates_at, revoked_at)

Existing keys keep their order (generation = id) and count as active since they were made.
Their private halves are encrypted by the application on first start (or `flask --app app keys
reencrypt`), which holds the key-encryption key; a migration does not. A downgrade leaves them
encrypted, which the previous version cannot read, and deletes the revoked keys, which it would
publish again.

Revision ID: 5c2e9a7d41b8
Revises: a7c4e2d9b153
Create Date: 2026-12-03 06:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c2e9a7d41b8'
down_revision = 'a7c4e2d9b153'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('activates_at', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', sa.Integer(), nullable=True))
    op.execute("UPDATE signing_keys SET generation = id, activates_at = created_at")
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.alter_column('generation', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('activates_at', existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint('uq_signing_keys_alg_generation', ['alg', 'generation'])


def downgrade():
    # the previous schema cannot say "revoked": a revoked (compromised) key kept would be published
    # and trusted again, by that version and after an upgrade, as a merely retired one
    op.execute("DELETE FROM signing_keys WHERE revoked_at IS NOT NULL")
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_constraint('uq_signing_keys_alg_generation', type_='unique')
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('activates_at')
        batch_op.drop_column('generation')

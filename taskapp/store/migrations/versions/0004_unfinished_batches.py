"""index for the idle flush: the batches still in flight

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_batches_unfinished", "batches", ["flushed_at"], postgresql_where=sa.text("finished_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_batches_unfinished", table_name="batches")

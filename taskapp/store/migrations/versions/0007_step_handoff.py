"""steps.handoff: a handoff is a field of the step, not a key of the input sent to Gemini

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("steps", sa.Column("handoff", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Steps queued before this carried the flag in their input: keep counting them.
    op.execute("UPDATE steps SET handoff = true WHERE input->>'handoff' = 'true'")


def downgrade() -> None:
    op.drop_column("steps", "handoff")

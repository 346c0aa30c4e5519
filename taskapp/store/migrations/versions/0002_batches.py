"""batches: the batch table, and each step's time in its buffer

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("mean_wait_ms", sa.Integer(), nullable=False),
        sa.Column("max_wait_ms", sa.Integer(), nullable=False),
        sa.Column("flushed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=14, scale=8), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batches_agent_model_flushed", "batches", ["agent", "model", "flushed_at"])
    op.add_column("steps", sa.Column("batched_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("steps", sa.Column("buffer_wait_ms", sa.Integer(), nullable=True))
    op.create_index("ix_steps_batch_id", "steps", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_steps_batch_id", table_name="steps")
    op.drop_column("steps", "buffer_wait_ms")
    op.drop_column("steps", "batched_at")
    op.drop_index("ix_batches_agent_model_flushed", table_name="batches")
    op.drop_table("batches")

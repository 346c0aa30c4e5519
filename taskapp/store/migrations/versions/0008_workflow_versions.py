"""Workflows as data: named workflows (a team's, or shared by the deployer), their immutable
versions, each run pinned to one, and the stage, kind, fan-out item and batch lane of each step

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("team_id", sa.Uuid(), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    # One name per team, and one per deployment among the shared (team_id NULL) ones.
    op.create_index(
        "uq_workflows_team_name",
        "workflows",
        ["team_id", "name"],
        unique=True,
        postgresql_where=sa.text("team_id IS NOT NULL"),
    )
    op.create_index(
        "uq_workflows_shared_name", "workflows", ["name"], unique=True, postgresql_where=sa.text("team_id IS NULL")
    )
    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("workflow_id", sa.Uuid(), sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        # json, not jsonb: the document keeps its key order (agents, fields, schema properties).
        sa.Column("definition", postgresql.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("workflow_id", "version", name="uq_workflow_versions_number"),
    )
    op.add_column(
        "runs", sa.Column("workflow_version_id", sa.Uuid(), sa.ForeignKey("workflow_versions.id"), nullable=True)
    )
    op.add_column("steps", sa.Column("stage", sa.String(100), nullable=True))
    op.add_column("steps", sa.Column("kind", sa.String(10), server_default="agent", nullable=False))
    op.add_column("steps", sa.Column("item", sa.Integer(), nullable=True))
    op.add_column("steps", sa.Column("lane", sa.String(200), nullable=True))
    op.add_column("batches", sa.Column("lane", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("batches", "lane")
    for column in ("lane", "item", "kind", "stage"):
        op.drop_column("steps", column)
    op.drop_column("runs", "workflow_version_id")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")

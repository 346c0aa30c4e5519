"""team shares: concurrent runs and tokens per day per team

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("teams", sa.Column("max_concurrent_runs", sa.Integer(), nullable=True))
    op.add_column("teams", sa.Column("daily_token_budget", sa.BigInteger(), nullable=True))
    op.create_index("ix_runs_team_status", "runs", ["team_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_runs_team_status", table_name="runs")
    op.drop_column("teams", "daily_token_budget")
    op.drop_column("teams", "max_concurrent_runs")

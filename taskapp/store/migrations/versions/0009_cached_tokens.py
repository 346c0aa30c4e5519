"""Cached input tokens: how many of a call's (and a step's share of a call's) input tokens Gemini
served from its prompt cache, billed at the cached price (issue 21, item 4)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TABLES = ("llm_calls", "steps")


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    for table in _TABLES:
        op.add_column(table, sa.Column("tokens_cached", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, "tokens_cached")

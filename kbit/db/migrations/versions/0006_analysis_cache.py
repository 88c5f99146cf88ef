"""The dashboard's analysis cache (a digest of a view's inputs -> its computed answer), an index
for the team filter, so a page of one sweep, family or team never reads the whole store, and the
rounding method in the frontier index, so the filters' choices come from the index alone.

Revision ID: 0006
Revises: 0005
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FRONTIER = ["status", "family", "dtype", "bits", "blocksize"]  # ix_runs_frontier before


def upgrade() -> None:
    op.create_table(
        "analysis_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_analysis_cache")),
    )
    op.create_index(op.f("ix_analysis_cache_created_at"), "analysis_cache", ["created_at"], unique=False)
    op.create_index("ix_runs_team_status", "runs", ["team_id", "status"], unique=False)
    op.drop_index("ix_runs_frontier", table_name="runs")
    op.create_index("ix_runs_frontier", "runs", FRONTIER + ["method"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_runs_frontier", table_name="runs")
    op.create_index("ix_runs_frontier", "runs", FRONTIER, unique=False)
    op.drop_index("ix_runs_team_status", table_name="runs")
    op.drop_index(op.f("ix_analysis_cache_created_at"), table_name="analysis_cache")
    op.drop_table("analysis_cache")

"""On Postgres the dashboard's filter indexes carry the runs' ids (INCLUDE), so a view's
fingerprint (count and sums of its finished runs' ids, kbit.db.queries.frontier_fingerprint) is
read from the index alone instead of every run's row: a 200,000-run family among 1M runs went from
265-336 ms to 48-62 ms. SQLite's indexes already hold the row id: nothing changes there.

The three indexes are rebuilt in the migration's transaction: about 3 s each per million runs, while
the runs table takes no writes (upgrade with the scheduler stopped, or accept the pause).

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

INDEXES = [
    ("ix_runs_frontier", ["status", "family", "dtype", "bits", "blocksize", "method"]),
    ("ix_runs_sweep_status", ["sweep_id", "status"]),
    ("ix_runs_team_status", ["team_id", "status"]),
]


def _rebuild(include: list[str]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns in INDEXES:
        op.drop_index(name, table_name="runs")
        op.create_index(name, "runs", columns, postgresql_include=include)


def upgrade() -> None:
    _rebuild(["id"])


def downgrade() -> None:
    _rebuild([])

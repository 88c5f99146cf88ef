"""The queue's indexes cover queued and running runs only, and runs carry their sweep's team, so a
claim finds each team's oldest queued run by index instead of aggregating the whole queue.

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# (name, the state its runs are in, columns): partial indexes, as kbit.db.models declares them.
QUEUE_INDEXES = [
    ("ix_runs_queued_team", "queued", ["team_id", "priority", "id"]),
    ("ix_runs_queued_model", "queued", ["team_id", "model", "priority", "id"]),
    ("ix_runs_queued_group", "queued", ["model", "revision", "eval_hash", "priority", "id"]),
    ("ix_runs_running_lease", "running", ["lease_expires_at"]),
    ("ix_runs_running_team", "running", ["team_id"]),
]
# The whole-table indexes they replace (0001).
OLD_INDEXES = [
    ("ix_runs_claim", ["status", "priority", "id"]),
    ("ix_runs_group", ["status", "model", "revision", "eval_hash", "priority", "id"]),
    ("ix_runs_lease", ["status", "lease_expires_at"]),
]


def _where(status: str) -> dict:
    where = sa.text(f"status = '{status}'")
    return {"postgresql_where": where, "sqlite_where": where}


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("team_id", sa.Integer(), nullable=True))
    op.execute("UPDATE runs SET team_id = (SELECT sweeps.team_id FROM sweeps WHERE sweeps.id = runs.sweep_id)")
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("team_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key(op.f("fk_runs_team_id_teams"), "teams", ["team_id"], ["id"])
        for name, _ in OLD_INDEXES:
            batch.drop_index(name)
    for name, status, columns in QUEUE_INDEXES:
        op.create_index(name, "runs", columns, unique=False, **_where(status))


def downgrade() -> None:
    for name, status, _ in QUEUE_INDEXES:
        op.drop_index(name, table_name="runs", **_where(status))
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("fk_runs_team_id_teams"), type_="foreignkey")
        batch.drop_column("team_id")
    for name, columns in OLD_INDEXES:
        op.create_index(name, "runs", columns, unique=False)

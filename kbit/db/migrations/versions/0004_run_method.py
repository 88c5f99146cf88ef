"""Runs get the rounding method of their config (rtn, gptq) as a column for the views and filters;
every run before it was round-to-nearest.

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("method", sa.String(length=16), nullable=False, server_default=sa.text("'rtn'")))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("method")

"""analysis_cache rows name their view (a digest of what was asked, without the runs'
fingerprint), so storing a view's new answer drops its older ones: the table holds one row per view
asked for, not one per state a busy view's runs passed through. The cache is disposable: the
table is made anew.

Revision ID: 0007
Revises: 0006
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _create(with_view: bool) -> None:
    op.create_table(
        "analysis_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        *([sa.Column("view", sa.String(length=64), nullable=False)] if with_view else []),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_analysis_cache")),
    )
    op.create_index(op.f("ix_analysis_cache_created_at"), "analysis_cache", ["created_at"], unique=False)
    if with_view:
        op.create_index(op.f("ix_analysis_cache_view"), "analysis_cache", ["view"], unique=False)


def _drop(with_view: bool) -> None:
    if with_view:
        op.drop_index(op.f("ix_analysis_cache_view"), table_name="analysis_cache")
    op.drop_index(op.f("ix_analysis_cache_created_at"), table_name="analysis_cache")
    op.drop_table("analysis_cache")


def upgrade() -> None:
    _drop(with_view=False)
    _create(with_view=True)


def downgrade() -> None:
    _drop(with_view=True)
    _create(with_view=False)

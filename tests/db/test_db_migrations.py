"""The models and the Alembic migrations describe the same schema, and migrations run both ways."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect

from kbit.db.migrate import alembic_config, current_revision, upgrade_to_head
from kbit.db.models import Base


def diff(engine, metadata):
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)


def test_models_match_migrations(engine):
    assert diff(engine, Base.metadata) == []


def test_compare_sees_a_model_change(engine):
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["runs"].append_column(Column("not_migrated", Integer))
    changes = diff(engine, changed)
    assert any(c[0] == "add_column" and c[3].name == "not_migrated" for c in changes), changes


def test_downgrade_to_base_and_back(engine):
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert "runs" not in inspect(engine).get_table_names()
    assert current_revision(engine) is None
    upgrade_to_head(engine)
    assert "runs" in inspect(engine).get_table_names()
    assert diff(engine, Base.metadata) == []


@pytest.mark.slow
def test_processes_starting_together_upgrade_once(db_url):
    # Several services starting at once against an empty database: one migrates, the others wait.
    import multiprocessing

    from alembic.script import ScriptDirectory
    from dbtest_helpers import connect_and_report
    from sqlalchemy import create_engine

    from kbit.db import connect

    engine = connect(db_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    engine.dispose()
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        revisions = pool.map(connect_and_report, [db_url] * 3)
    assert revisions == [ScriptDirectory.from_config(alembic_config()).get_current_head()] * 3
    check = create_engine(db_url)
    assert diff(check, Base.metadata) == []
    check.dispose()


def included_columns(engine) -> dict[str, bool]:
    """Whether each of the dashboard's filter indexes carries the runs' ids (Postgres: INCLUDE)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'runs'"))
        return {name: "INCLUDE (id)" in definition for name, definition in rows
                if name in ("ix_runs_frontier", "ix_runs_sweep_status", "ix_runs_team_status")}


def test_the_filter_indexes_hold_the_ids_on_postgres_and_lose_them_on_downgrade(postgres_engine):
    from kbit.db.migrate import run_migration

    every = ["ix_runs_frontier", "ix_runs_sweep_status", "ix_runs_team_status"]
    assert included_columns(postgres_engine) == dict.fromkeys(every, True)
    run_migration(postgres_engine, "downgrade", "0007")
    try:
        assert included_columns(postgres_engine) == dict.fromkeys(every, False)
    finally:
        upgrade_to_head(postgres_engine)
    assert included_columns(postgres_engine) == dict.fromkeys(every, True)

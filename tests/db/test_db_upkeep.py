"""Vacuum (kbit.db.upkeep): the scheduler is warned when Postgres will not vacuum the queue's
dead row versions, and `vacuum_runs` clears them (the scheduler calls it while autovacuum is off)."""

from __future__ import annotations

import pytest
from dbtest_helpers import make_run
from sqlalchemy import event, text

from kbit.db import connect, mask_url, queue, session_scope, upkeep


@pytest.mark.parametrize("server_says", ["on", "off"])
def test_the_scheduler_is_warned_when_postgres_will_not_vacuum_the_queue(postgres_url, server_says):
    """upkeep_warning asks the server (`SHOW autovacuum`); the answer is rewritten on the wire so
    both cases run against the real server, whatever it is set to."""
    engine = connect(postgres_url, upgrade=False)

    def answer(conn, cursor, statement, parameters, context, executemany):
        return (f"SELECT '{server_says}'", parameters) if statement == "SHOW autovacuum" else (statement, parameters)

    event.listen(engine, "before_cursor_execute", answer, retval=True)
    try:
        warning = upkeep.upkeep_warning(engine)
    finally:
        engine.dispose()
    if server_says == "on":
        assert warning is None
    else:
        assert "autovacuum off" in warning and "ALTER SYSTEM SET autovacuum = on" in warning
        assert mask_url(postgres_url) in warning


def test_the_vacuum_warning_follows_the_server_and_sqlite_needs_none(engine, backend):
    if backend == "sqlite":
        assert upkeep.upkeep_warning(engine) is None
    else:
        with engine.connect() as conn:
            on = conn.exec_driver_sql("SHOW autovacuum").scalar() == "on"
        assert (upkeep.upkeep_warning(engine) is None) == on


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite keeps no dead row versions: nothing to vacuum
def test_vacuum_runs_makes_the_runs_table_visible_to_index_only_reads(engine, team_token):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="v", spec={}, runs=[make_run(i) for i in range(40)])
    with session_scope(engine) as s:
        queue.claim_runs(s, worker="w", limit=16)  # dead row versions: the claimed runs' old rows
    upkeep.vacuum_runs(engine)
    with engine.connect() as conn:
        visible, pages = conn.execute(text("SELECT relallvisible, relpages FROM pg_class WHERE relname = 'runs'")).one()
    assert pages > 0 and visible == pages  # every page vacuumed and marked all-visible

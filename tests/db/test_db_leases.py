"""The scheduler's set-based lease checks (holders, renew_leases, overdue_runs, requeue_expired), and a claim
whose reads do not grow with the queue (Postgres plans)."""

from __future__ import annotations

import datetime as dt

import pytest
from dbtest_helpers import make_run
from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session

from kbit.db import queue, session_scope
from kbit.db.clock import utcnow
from kbit.db.models import Run


def enqueue(engine, runs, name="demo", spec=None, team="nlp", priority=0) -> int:
    with session_scope(engine) as s:
        return queue.enqueue_sweep(s, team=team, name=name, spec=spec or {"n": name}, runs=runs, priority=priority)


def test_holders_takes_more_ids_than_a_statement_may_bind(engine, team_token):
    # 70,000 ids: an IN list binds one parameter per id, past the 65,535 a Postgres statement may bind.
    enqueue(engine, [make_run(i, f"m{i % 2}") for i in range(4)])
    with session_scope(engine) as s:
        claimed = [r.run_id for r in queue.claim_runs(s, worker="w1", limit=16)]
        assert queue.holders(s, list(range(1, 70_001))) == dict.fromkeys(claimed, "w1")
        assert queue.heartbeat(s, [*claimed, *range(100, 70_000)], worker="w1") == claimed
        assert queue.holders(s, []) == {}


def test_renew_leases_renews_every_group_in_one_statement_and_only_what_they_hold_with_under_half_left(engine, team_token):
    enqueue(engine, [make_run(i, f"m{i % 3}") for i in range(6)])
    with session_scope(engine) as s:
        groups = {w: [r.run_id for r in queue.claim_runs(s, worker=w, limit=16)] for w in ("s/t1", "s/t2", "other")}
        s.execute(update(Run).values(lease_expires_at=utcnow()))  # every lease about to run out
        fresh = groups["s/t2"][0]  # but one just renewed by its worker (over half a lease left)
        s.execute(update(Run).where(Run.id == fresh).values(lease_expires_at=utcnow() + dt.timedelta(seconds=400)))
    mine = [i for i in groups["s/t1"] + groups["s/t2"] if i != fresh]
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with session_scope(engine) as s:
        renewed = queue.renew_leases(s, [*mine, *groups["other"], 70_000], ["s/t1", "s/t2"], lease_seconds=600)
    assert renewed == len(mine) and sum("UPDATE runs" in q for q in statements) == 1
    with session_scope(engine) as s:
        expires = dict(s.execute(select(Run.id, Run.lease_expires_at)).all())
        later = utcnow() + dt.timedelta(seconds=500)
        assert all(expires[i] > later for i in mine)  # the scheduler's groups: renewed
        assert all(expires[i] < later for i in groups["other"])  # another owner's: left alone
        assert utcnow() + dt.timedelta(seconds=390) < expires[fresh] < utcnow() + dt.timedelta(seconds=400)  # not rewritten
        assert queue.renew_leases(s, [], ["s/t1"]) == 0 and queue.renew_leases(s, mine, []) == 0


def test_overdue_runs_are_those_past_their_sweeps_limit_or_the_default(engine, team_token):
    enqueue(engine, [make_run(i, "a") for i in range(2)], name="limited", spec={"run_timeout_s": 30})
    enqueue(engine, [make_run(i, "b", cache_key=f"b{i}") for i in range(2)], name="default", spec={"run_timeout_s": 0})
    with session_scope(engine) as s:
        ids = [r.run_id for w in ("wa", "wb") for r in queue.claim_runs(s, worker=w, limit=16)]
        assert ids == [1, 2, 3, 4]
        for run_id, age_s in zip(ids, (40, 20, 130, 20)):
            s.execute(update(Run).where(Run.id == run_id).values(started_at=utcnow() - dt.timedelta(seconds=age_s)))
    with session_scope(engine) as s:
        assert queue.overdue_runs(s, default_timeout_s=100) == [(1, "wa", 30.0), (3, "wb", 100.0)]
        assert queue.overdue_runs(s, default_timeout_s=1000) == [(1, "wa", 30.0)]


def test_requeue_expired_requeues_or_fails_each_run_by_its_own_attempts(engine, team_token):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="one", spec={}, runs=[make_run(0, "a")], max_attempts=1)
        queue.enqueue_sweep(s, team="nlp", name="two", spec={}, runs=[make_run(1, "b")], max_attempts=2)
        claimed = [queue.claim_runs(s, worker=w, limit=1, lease_seconds=30)[0].run_id for w in ("w1", "w2")]
        s.execute(update(Run).where(Run.id == claimed[0]).values(error="out of memory"))
        assert queue.requeue_expired(s, now=utcnow() + dt.timedelta(seconds=31)) == [1, 2]
        rows = {run.id: run for run in s.query(Run)}
    assert (rows[1].status, rows[1].lease_owner, rows[1].finished_at is not None) == ("failed", None, True)
    assert rows[1].error == ("worker w1 stopped renewing its lease during attempt 1 of 1 (it died or lost its "
                             "connection); previous error: out of memory")
    assert (rows[2].status, rows[2].finished_at, rows[2].error_type) == ("queued", None, "lease_expired")
    assert rows[2].error == "worker w2 stopped renewing its lease during attempt 1 of 2 (it died or lost its connection)"


def _runs_read(plan: dict) -> tuple[int, list[str]]:
    """Rows the plan read from `runs` (kept or filtered out, over every loop), and how it read them."""
    rows, scans = 0, []
    if plan.get("Relation Name") == "runs":
        loops = plan.get("Actual Loops", 1)
        rows += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
        scans.append(f"{plan['Node Type']} {plan.get('Index Name', '')}".strip())
    for child in plan.get("Plans", []):
        more, how = _runs_read(child)
        rows, scans = rows + more, scans + how
    return rows, scans


def _claim_reads(engine, **options) -> list[tuple[int, list[str]]]:
    """What each query of one claim reads from `runs`: the claim runs and is rolled back, then each
    of its queries is run again under EXPLAIN ANALYZE on the same rows."""
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as s:
            assert queue.claim_runs(s, worker="w-plan", limit=16, **options)
            s.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as conn:
        plans = [conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).scalar_one()[0]["Plan"]
                 for sql, params in statements]
        conn.rollback()
    return [_runs_read(plan) for plan in plans]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_claim_reads_a_few_index_entries_however_long_the_queue(engine, team_token):
    # 20,000 queued runs of two teams behind 10,000 finished ones; a claim of 16 reads the heads of
    # the queue's partial indexes, never the queue or the finished runs (an aggregate over the queue,
    # a sort of it or a walk of the primary key would read thousands of rows).
    for team in ("nlp", "vision"):
        enqueue(engine, [make_run(i, f"{team}/m{i % 5}", cache_key=f"{team}{i}") for i in range(50)], name=team, team=team)
    with engine.begin() as conn:
        columns = ", ".join(c.name for c in Run.__table__.columns if c.name != "id")
        conn.execute(text(f"INSERT INTO runs ({columns}) SELECT {columns} FROM runs, generate_series(1, 299) "
                          "ORDER BY generate_series, id"))
        conn.execute(text("UPDATE runs SET status = 'failed' WHERE id <= 10000"))
        conn.execute(text("ANALYZE runs"))
    for options in ({}, {"prefer": [("nlp/m4", "main")]}, {"avoid": {"nlp/m0": 1, "nlp/m1": 1, "nlp/m2": 1}}):
        reads = _claim_reads(engine, **options)
        assert sum(rows for rows, _ in reads) < 200, (options, reads)
        # Index scans only (a primary key lookup locks the one run found; a walk of it is over the bound above).
        scans = {scan for _, how in reads for scan in how} - {"Index Scan pk_runs"}
        assert all(scan.startswith(("Index Scan ix_runs_", "Index Only Scan ix_runs_")) for scan in scans), scans

"""Several worker processes on one queue, and workers that die: nothing claimed twice, nothing lost."""

from __future__ import annotations

import datetime as dt
import multiprocessing

import pytest
from dbtest_helpers import claim_and_die, claim_until_empty, make_run
from sqlalchemy import func, select

from kbit.db import connect, queue, session_scope
from kbit.db.clock import utcnow
from kbit.db.models import Result, Run

# 400 runs in claims of 1-8 give each of the 4 processes dozens of contended claims (1,000 took a
# minute of the suite's two cores for no more contention)
N_RUNS = 400
N_WORKERS = 4


@pytest.mark.slow
def test_processes_claim_every_run_exactly_once(db_url):
    engine = connect(db_url)
    with session_scope(engine) as s:
        from kbit.db import teams

        teams.create_team(s, "nlp")
        # Several groups (models x evals) and two priorities, so claims contend on group heads.
        for p, name in ((0, "bulk"), (5, "urgent")):
            runs = [make_run(i, f"m{i % 5}", eval_spec={"tasks": ["t"], "shots": i % 2}) for i in range(N_RUNS // 2)]
            for r in runs:
                r["cache_key"] += name
            queue.enqueue_sweep(s, team="nlp", name=name, spec={}, runs=runs, priority=p)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(N_WORKERS) as pool:
        per_worker = pool.starmap(claim_until_empty, [(db_url, f"w{i}", i) for i in range(N_WORKERS)])
    claimed = [run_id for ids in per_worker for run_id in ids]
    assert len(claimed) == N_RUNS, f"{len(claimed)} claims for {N_RUNS} runs"
    assert len(set(claimed)) == N_RUNS, "a run was claimed twice"
    assert sum(1 for ids in per_worker if ids) >= 2, "only one worker got work: no contention was tested"
    with session_scope(engine) as s:
        assert set(s.scalars(select(Run.id))) == set(claimed)
        assert dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all()) == {"done": N_RUNS}
        assert s.scalar(select(func.max(Run.attempts))) == 1
        assert s.scalar(select(func.count()).select_from(Result)) == 3 * N_RUNS
    engine.dispose()


@pytest.mark.slow
def test_worker_that_dies_leaves_runs_to_be_reclaimed(db_url):
    engine = connect(db_url)
    with session_scope(engine) as s:
        from kbit.db import teams

        teams.create_team(s, "nlp")
        queue.enqueue_sweep(s, team="nlp", name="x", spec={}, runs=[make_run(i) for i in range(6)])
    proc = multiprocessing.get_context("spawn").Process(target=claim_and_die, args=(db_url, "doomed", 4))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 1
    with session_scope(engine) as s:
        orphans = sorted(s.scalars(select(Run.id).where(Run.lease_owner == "doomed", Run.status == "running")))
        assert orphans == [1, 2, 3, 4]
        # While the lease runs, nobody else gets them.
        assert [r.run_id for r in queue.claim_runs(s, worker="alive", limit=10)] == [5, 6]
        assert queue.requeue_expired(s) == []
    with session_scope(engine) as s:
        assert queue.requeue_expired(s, now=utcnow() + dt.timedelta(seconds=61)) == orphans
    with session_scope(engine) as s:
        again = queue.claim_runs(s, worker="alive", limit=10)
    assert [(r.run_id, r.attempt) for r in again] == [(i, 2) for i in orphans]
    engine.dispose()

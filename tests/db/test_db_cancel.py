"""cancel_sweep and sweep_progress: only the owning team cancels; running runs stop at the next config."""

from __future__ import annotations

import pytest
from dbtest_helpers import done_result, make_run
from sqlalchemy import select

from kbit.db import queue, session_scope
from kbit.db.models import Run, Sweep
from kbit.errors import NotFound, PermissionDenied


def enqueue(engine, n, team="nlp", name="demo") -> int:
    with session_scope(engine) as s:
        return queue.enqueue_sweep(s, team=team, name=name, spec={}, runs=[make_run(i) for i in range(n)])


def test_cancel_stops_queued_and_running_runs(engine, team_token):
    sweep = enqueue(engine, 5)
    with session_scope(engine) as s:
        held = queue.claim_runs(s, worker="w1", limit=2)
    with session_scope(engine) as s:
        queue.complete_run(s, held[0].run_id, done_result(held[0].config), worker="w1")
    with session_scope(engine) as s:
        progress = queue.cancel_sweep(s, sweep, team="nlp")
    assert progress == {"queued": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 4, "cached": 0,
                        "total": 5, "eta_s": 0.0}
    with session_scope(engine) as s:
        # The worker's next heartbeat drops the cancelled run: it stops before the next config.
        assert queue.heartbeat(s, [r.run_id for r in held], worker="w1") == []
        assert queue.claim_runs(s, worker="w2") == []
        assert s.get(Sweep, sweep).status == "cancelled" and s.get(Sweep, sweep).cancelled_at is not None


def test_other_team_cannot_cancel_and_nothing_changes(engine, team_token):
    sweep = enqueue(engine, 3)
    with pytest.raises(PermissionDenied, match="belongs to team 'nlp', not 'vision'"):
        with session_scope(engine) as s:
            queue.cancel_sweep(s, sweep, team="vision")
    with session_scope(engine) as s:
        assert set(s.scalars(select(Run.status))) == {"queued"}
        assert s.get(Sweep, sweep).status == "active"


def test_missing_sweep_is_not_found(engine, team_token):
    with session_scope(engine) as s:
        with pytest.raises(NotFound, match="sweep 42 does not exist"):
            queue.cancel_sweep(s, 42, team="nlp")
        with pytest.raises(NotFound):
            queue.sweep_progress(s, 42)


def test_progress_counts_and_eta(engine, team_token):
    sweep = enqueue(engine, 4)
    with session_scope(engine) as s:
        assert queue.sweep_progress(s, sweep) | {"eta_s": None} == {
            "queued": 4, "running": 0, "done": 0, "failed": 0, "cancelled": 0, "cached": 0, "total": 4, "eta_s": None
        }
        held = queue.claim_runs(s, worker="w", limit=4)
    with session_scope(engine) as s:
        queue.complete_run(s, held[0].run_id, done_result(held[0].config), worker="w")
        queue.fail_run(s, held[1].run_id, error="boom", worker="w", retryable=False)
    with session_scope(engine) as s:
        progress = queue.sweep_progress(s, sweep)
    assert (progress["running"], progress["done"], progress["failed"], progress["total"]) == (2, 1, 1, 4)
    assert progress["eta_s"] is not None and progress["eta_s"] >= 0


def test_a_result_finished_after_the_cancel_leaves_the_run_cancelled(engine, team_token):
    # The worker was mid-config when the sweep was cancelled: the cancel wins (compare-and-set on
    # the lease), so what a team cancelled never turns up as done.
    sweep = enqueue(engine, 3)
    with session_scope(engine) as s:
        held = queue.claim_runs(s, worker="w1", limit=3)
    with session_scope(engine) as s:
        queue.cancel_sweep(s, sweep, team="nlp")
    with session_scope(engine) as s:
        assert queue.complete_run(s, held[0].run_id, done_result(held[0].config), worker="w1") is False
        assert queue.heartbeat(s, [r.run_id for r in held[1:]], worker="w1") == []
        progress = queue.sweep_progress(s, sweep)
    assert (progress["done"], progress["cancelled"], progress["running"]) == (0, 3, 0)

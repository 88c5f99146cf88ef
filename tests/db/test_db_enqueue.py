"""enqueue_sweep: one transaction, idempotent, cache hits become `cached`, bad input writes nothing."""

from __future__ import annotations

import pytest
from dbtest_helpers import CONFIGS, done_result, make_run
from sqlalchemy import func, select

from kbit.db import queries, queue, session_scope
from kbit.db.models import Run, Sweep
from kbit.errors import NotFound


def count(engine, model) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def enqueue(engine, runs, name="demo", spec=None, team="nlp", **kw) -> int:
    with session_scope(engine) as s:
        return queue.enqueue_sweep(s, team=team, name=name, spec=spec or {"name": name}, runs=runs, **kw)


def finish_all(engine, worker="w"):
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker=worker, limit=1000)
    with session_scope(engine) as s:
        for r in claimed:
            queue.complete_run(s, r.run_id, done_result(r.config), worker=worker)
    return claimed


def test_runs_are_stored_with_filter_columns(engine, team_token):
    runs = [make_run(i) for i in range(4)]
    runs[0]["label"] = "nf4-b64"
    sweep = enqueue(engine, runs, priority=5, submitter="alice", code_version="0.1.0+gabc", max_attempts=2)
    with session_scope(engine) as s:
        rows = s.scalars(select(Run).where(Run.sweep_id == sweep).order_by(Run.id)).all()
        sw = s.get(Sweep, sweep)
        assert (sw.priority, sw.submitter, sw.code_version, sw.status) == (5, "alice", "0.1.0+gabc", "active")
    assert [r.status for r in rows] == ["queued"] * 4
    assert [(r.bits, r.dtype, r.blocksize, r.exponent_bits) for r in rows] == [
        (c["bits"], c["dtype"], c["blocksize"], c["exponent_bits"]) for c in CONFIGS
    ]
    assert [r.label for r in rows] == ["nf4-b64", "fp3e2-b128", "int8-bT-o2%", "16bit"]
    assert rows[2].outlier_fraction == pytest.approx(0.02)
    assert all(r.priority == 5 and r.max_attempts == 2 and r.attempts == 0 for r in rows)
    assert rows[0].config == CONFIGS[0] and rows[0].eval == runs[0]["eval"]


def test_same_sweep_twice_is_written_once(engine, team_token):
    runs = [make_run(i) for i in range(3)]
    first = enqueue(engine, runs, spec={"models": ["a"], "bits": [3, 4]})
    second = enqueue(engine, runs, spec={"bits": [3, 4], "models": ["a"]})  # same spec, other key order
    assert first == second
    assert count(engine, Run) == 3
    other = enqueue(engine, runs, spec={"models": ["a"], "bits": [4]})
    assert other != first


def test_resubmitting_after_cancel_starts_a_new_sweep(engine, team_token):
    runs = [make_run(i) for i in range(2)]
    first = enqueue(engine, runs)
    with session_scope(engine) as s:
        queue.cancel_sweep(s, first, team="nlp")
    second = enqueue(engine, runs)
    assert second != first
    with session_scope(engine) as s:
        assert queue.sweep_progress(s, second)["queued"] == 2


def test_cache_hit_becomes_cached_and_shows_source_metrics(engine, team_token):
    first = enqueue(engine, [make_run(i) for i in range(3)], name="first")
    finish_all(engine)
    # Another team asks for two of the same runs plus a new one.
    runs = [make_run(0), make_run(1), make_run(7)]
    second = enqueue(engine, runs, name="second", team="vision")
    with session_scope(engine) as s:
        rows = s.execute(
            select(Run.cache_key, Run.status, Run.cached_from_id).where(Run.sweep_id == second).order_by(Run.id)
        ).all()
        sources = dict(s.execute(select(Run.cache_key, Run.id).where(Run.sweep_id == first)).all())
        progress = queue.sweep_progress(s, second)
        frontier = {r["run_id"]: r for r in queries.frontier_rows(s, sweeps=[second])}
        source_rows = {r["run_id"]: r for r in queries.frontier_rows(s, sweeps=[first])}
    assert [r.status for r in rows] == ["cached", "cached", "queued"]
    assert rows[0].cached_from_id == sources[rows[0].cache_key]
    assert progress["cached"] == 2 and progress["queued"] == 1
    assert len(frontier) == 2
    for row in frontier.values():
        source = source_rows[row["cached_from"]]
        assert row["team"] == "vision" and row["status"] == "cached"
        assert (row["value"], row["total_bits"], row["n_params"]) == (
            source["value"], source["total_bits"], source["n_params"]
        )


def test_bad_runs_are_all_reported_and_nothing_written(engine, team_token):
    bad = [make_run(0), {"model": "m"}, make_run(2) | {"config": {"bits": "four"}}, "not a dict"]
    with pytest.raises(ValueError) as err:
        enqueue(engine, bad)
    message = str(err.value)
    assert "run 1: missing 'revision'" in message and "run 1: missing 'cache_key'" in message
    assert "run 2: config['bits'] must be an int" in message
    assert "run 3: expected a dict" in message
    assert count(engine, Sweep) == 0 and count(engine, Run) == 0


def test_unknown_team_writes_nothing(engine, team_token):
    with pytest.raises(NotFound, match="team 'ghost' does not exist"):
        enqueue(engine, [make_run(0)], team="ghost")
    assert count(engine, Sweep) == 0 and count(engine, Run) == 0


def test_failure_mid_transaction_leaves_nothing(engine, team_token):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as s:
            queue.enqueue_sweep(s, team="nlp", name="x", spec={}, runs=[make_run(i) for i in range(5)])
            raise RuntimeError("scheduler died before commit")
    assert count(engine, Sweep) == 0 and count(engine, Run) == 0


@pytest.mark.slow
def test_large_sweep_enqueues_in_chunks(engine, team_token):
    runs = [make_run(i, model=f"m{i % 7}") for i in range(4500)]
    sweep = enqueue(engine, runs)
    with session_scope(engine) as s:
        assert queue.sweep_progress(s, sweep)["queued"] == 4500

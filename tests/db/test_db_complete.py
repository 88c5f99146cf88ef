"""complete_run(s): metrics, bit report, provenance and samples stored exactly once, a batch in a few statements."""

from __future__ import annotations

import pytest
from dbtest_helpers import done_result, make_run
from sqlalchemy import func, select

from kbit.db import queries, queue, session_scope
from kbit.db.models import Result, Run, RunBits, Sample
from kbit.errors import NotFound


def setup_claimed(engine, runs, worker="w1", name="demo"):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name=name, spec={}, runs=runs)
    with session_scope(engine) as s:
        return queue.claim_runs(s, worker=worker, limit=100)


def counts(engine):
    with session_scope(engine) as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Result, RunBits, Sample))


def test_complete_stores_everything(engine, team_token):
    (r,) = setup_claimed(engine, [make_run(0)])
    samples = [{"task": "kbit_choice", "doc_id": 3, "loglikelihoods": [-1.0, -2.0], "target": 0}]
    result = done_result(r.config, 0.6, n_params=5000, samples=samples)
    with session_scope(engine) as s:
        assert queue.complete_run(s, r.run_id, result, worker="w1") is True
    with session_scope(engine) as s:
        detail = queries.run_detail(s, r.run_id)
        sample = s.scalars(select(Sample)).one()
    assert detail["status"] == "done" and detail["device"] == "cpu" and detail["wall_time_s"] == 1.5
    assert detail["peak_memory_bytes"] == 12345 and detail["provenance"] == {"kbit": "0.1.0", "seed": 1234}
    assert detail["bits_report"] == result["bits"]
    assert {m["task"]: m["value"] for m in detail["metrics"]} == pytest.approx(
        {"kbit_lastword": 0.6, "kbit_choice": 0.3, "mean_zero_shot": 0.45}
    )
    assert (sample.task, sample.doc_id, sample.data["loglikelihoods"]) == ("kbit_choice", 3, [-1.0, -2.0])
    assert counts(engine) == (3, 1, 1)


def test_result_reported_twice_is_stored_once(engine, team_token):
    (r,) = setup_claimed(engine, [make_run(0)])
    with session_scope(engine) as s:
        assert queue.complete_run(s, r.run_id, done_result(r.config, 0.6), worker="w1") is True
    # A retried attempt (or a confused worker) reports again, with other numbers.
    with session_scope(engine) as s:
        assert queue.complete_run(s, r.run_id, done_result(r.config, 0.9), worker="w1") is False
        assert queue.complete_run(s, r.run_id, done_result(r.config, 0.9), worker="w2") is False
    assert counts(engine) == (3, 1, 0)
    with session_scope(engine) as s:
        assert s.scalar(select(Result.value).where(Result.task == "kbit_lastword")) == 0.6
        assert s.scalar(select(Run.worker)) == "w1"


def test_a_unique_constraint_backs_the_check(engine, team_token):
    (r,) = setup_claimed(engine, [make_run(0)])
    with session_scope(engine) as s:
        queue.complete_run(s, r.run_id, done_result(r.config), worker="w1")
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            s.add(Result(run_id=r.run_id, task="kbit_lastword", metric="acc", value=0.1))
    assert counts(engine)[0] == 3


def test_two_runs_with_one_cache_key_keep_one_result(engine, team_token):
    # Two sweeps asked for the same thing before either finished: the second to finish is cached.
    runs = [make_run(0, cache_key="same"), make_run(1, "other-model", cache_key="same")]
    a, b = setup_claimed(engine, runs[:1]) + setup_claimed(engine, runs[1:], name="later")
    with session_scope(engine) as s:
        assert queue.complete_run(s, a.run_id, done_result(a.config, 0.6), worker="w1") is True
        assert queue.complete_run(s, b.run_id, done_result(b.config, 0.7), worker="w1") is False
    with session_scope(engine) as s:
        second = s.get(Run, b.run_id)
        assert (second.status, second.cached_from_id) == ("cached", a.run_id)
    assert counts(engine) == (3, 1, 0)


def test_only_the_lease_holder_stores_a_result(engine, team_token):
    """Compare-and-set: a worker whose lease ran out and was given to another reports late; the
    run keeps the new holder's result."""
    import datetime as dt

    from kbit.db.clock import utcnow

    (r,) = setup_claimed(engine, [make_run(0)], worker="slow")
    with session_scope(engine) as s:
        queue.requeue_expired(s, now=utcnow() + dt.timedelta(hours=1))
    with session_scope(engine) as s:
        (again,) = queue.claim_runs(s, worker="fast")
    with session_scope(engine) as s:
        assert queue.complete_run(s, r.run_id, done_result(r.config, 0.6), worker="slow") is False
        assert queue.heartbeat(s, [again.run_id], worker="fast") == [again.run_id]  # fast carries on
        assert queue.complete_run(s, again.run_id, done_result(r.config, 0.7), worker="fast") is True
    with session_scope(engine) as s:
        assert s.scalar(select(Result.value).where(Result.task == "kbit_lastword")) == 0.7
        assert s.get(Run, r.run_id).worker == "fast"
    assert counts(engine) == (3, 1, 0)


@pytest.mark.parametrize("end", ["cancel", "fail"])
def test_a_cancelled_or_failed_run_stays_so_when_its_worker_reports(engine, team_token, end):
    (r,) = setup_claimed(engine, [make_run(0)], worker="w1")
    with session_scope(engine) as s:
        if end == "cancel":
            queue.cancel_sweep(s, r.sweep_id, team="nlp")
        else:
            assert queue.fail_run(s, r.run_id, error="boom", worker="w1", retryable=False) == "failed"
    with session_scope(engine) as s:
        assert queue.complete_run(s, r.run_id, done_result(r.config, 0.6), worker="w1") is False
    with session_scope(engine) as s:
        assert s.get(Run, r.run_id).status == ("cancelled" if end == "cancel" else "failed")
    assert counts(engine) == (0, 0, 0)


def test_failed_result_marks_run_failed(engine, team_token):
    (r,) = setup_claimed(engine, [make_run(0)])
    failed = {"config": r.config, "status": "failed", "error_type": "task_not_found",
              "error": "task 'nope' is not a known lm-eval task", "metrics": [], "bits": None,
              "wall_time_s": 0.1, "peak_memory_bytes": 0, "device": "cpu", "provenance": {"seed": 1}}
    with session_scope(engine) as s:
        assert queue.complete_run(s, r.run_id, failed, worker="w1") is True
        detail = queries.run_detail(s, r.run_id)
    assert (detail["status"], detail["error_type"]) == ("failed", "task_not_found")
    assert "nope" in detail["error"] and detail["metrics"] == []
    assert counts(engine) == (0, 0, 0)


def test_bad_results_are_rejected_before_writing(engine, team_token):
    (r,) = setup_claimed(engine, [make_run(0)])
    with session_scope(engine) as s:
        with pytest.raises(ValueError, match="status 'done' or 'failed'"):
            queue.complete_run(s, r.run_id, {"status": "weird"}, worker="w1")
        with pytest.raises(ValueError, match="task, metric and value"):
            queue.complete_run(s, r.run_id, {"status": "done", "metrics": [{"task": "t"}]}, worker="w1")
        with pytest.raises(NotFound, match="run 999"):
            queue.complete_run(s, 999, done_result(r.config), worker="w1")
    with session_scope(engine) as s:
        assert s.get(Run, r.run_id).status == "running"
    assert counts(engine) == (0, 0, 0)


def test_concurrent_completes_of_one_cache_key_keep_one_result(engine, team_token):
    # Two transactions finish runs with one cache key at the same time; the later commit sees
    # the unique index (Postgres) or waits for the writer lock (SQLite) and becomes cached.
    import threading

    runs = [make_run(0, cache_key="same"), make_run(1, "other-model", cache_key="same")]
    a, b = setup_claimed(engine, runs[:1]) + setup_claimed(engine, runs[1:], name="later")
    outcome = {}

    def finish_b():
        with session_scope(engine) as s:
            outcome["b"] = queue.complete_run(s, b.run_id, done_result(b.config, 0.7), worker="w1")

    with session_scope(engine) as s:
        assert queue.complete_run(s, a.run_id, done_result(a.config, 0.6), worker="w1") is True
        thread = threading.Thread(target=finish_b)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "b must wait for a's transaction"
    thread.join(30)
    assert outcome == {"b": False}
    with session_scope(engine) as s:
        assert (s.get(Run, b.run_id).status, s.get(Run, b.run_id).cached_from_id) == ("cached", a.run_id)
    assert counts(engine) == (3, 1, 0)


def _statements(engine):
    """A list that fills with every SQL statement `engine` sends (to count round trips)."""
    from sqlalchemy import event

    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    return sent


def test_a_batch_is_stored_in_a_few_statements_whatever_its_size(engine, team_token):
    """complete_runs is set-based: 16 results with metrics, bits, scores and samples cost the same
    handful of statements as 2 (one per run would be 16 x 6)."""
    configs = [{"bits": bits, "dtype": "int", "blocksize": blocksize, "exponent_bits": None, "outlier_fraction": 0.0}
               for bits in (2, 3, 4, 5, 6, 8) for blocksize in (32, 64, 128)]
    claimed = setup_claimed(engine, [make_run(i, config=c) for i, c in enumerate(configs)])
    assert len(claimed) == 18  # one group
    scores = [{"task": "kbit_choice", "metric": "acc", "doc_ids": [0, 1], "values": [1.0, 0.0]}]

    def finished(runs):  # every other run's start already written (started_ago None), as in a worker's batch
        return [queue.Finished(r.run_id, {**done_result(r.config, 0.5, samples=[{"task": "t", "doc_id": 0}]),
                                          "scores": scores}, ago=0.5, started_ago=None if r.run_id % 2 else 100.0)
                for r in runs]

    used = []
    for batch in (claimed[:2], claimed[2:]):
        sent = _statements(engine)
        with session_scope(engine) as s:
            assert queue.complete_runs(s, finished(batch), worker="w1") == [True] * len(batch)
        used.append(len([x for x in sent if not x.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))]))
    assert used[0] == used[1] <= 8  # BEGIN, the locking SELECT, two UPDATEs (with and without a start), 4 INSERTs
    assert counts(engine) == (3 * 18, 18, 18)
    with session_scope(engine) as s:
        rows = s.execute(select(Run.id, Run.status, Run.started_at, Run.finished_at, Run.worker)).all()
    assert {r.status for r in rows} == {"done"} and {r.worker for r in rows} == {"w1"}
    started = {r.id: r.started_at for r in rows}
    took = {r.id: (r.finished_at - r.started_at).total_seconds() for r in rows if r.id % 2 == 0}
    assert len(took) == 9 and all(abs(t - 99.5) < 1 for t in took.values())  # its own start, 99.5 s before its finish
    assert all(started[i] is None for i in started if i % 2)  # a start said to be written already: not touched


def test_a_batch_stores_what_its_worker_holds_and_caches_a_key_finished_first(engine, team_token):
    """One batch: a run this worker holds (stored), one it lost to another worker (left alone), a
    failed result (failed for good), and one whose cache key another run finished first (cached);
    the rest of the batch is stored all the same."""
    runs = [make_run(0), make_run(1), make_run(2), make_run(3, cache_key="same")]  # one model: one group
    kept, lost, failing, dup = setup_claimed(engine, runs)
    (first,) = setup_claimed(engine, [make_run(4, "kbit/micro/e", cache_key="same")], worker="w0", name="earlier")
    with session_scope(engine) as s:
        assert queue.complete_run(s, first.run_id, done_result(first.config, 0.9), worker="w0") is True
        s.execute(Run.__table__.update().where(Run.id == lost.run_id).values(lease_owner="w2"))
    failed = {**done_result(failing.config), "status": "failed", "error_type": "oom", "error": "out of memory",
              "metrics": [], "bits": None}
    batch = [queue.Finished(kept.run_id, done_result(kept.config, 0.6)),
             queue.Finished(lost.run_id, done_result(lost.config, 0.7)),
             queue.Finished(failing.run_id, failed),
             queue.Finished(dup.run_id, done_result(dup.config, 0.8))]
    with session_scope(engine) as s:
        assert queue.complete_runs(s, batch, worker="w1") == [True, False, True, False]
    with session_scope(engine) as s:
        state = {r.id: r for r in s.execute(select(Run.id, Run.status, Run.cached_from_id, Run.error))}
        values = dict(s.execute(select(Result.run_id, Result.value).where(Result.task == "kbit_lastword")).all())
    assert state[kept.run_id].status == "done" and values[kept.run_id] == 0.6
    assert state[lost.run_id].status == "running" and lost.run_id not in values
    assert (state[failing.run_id].status, state[failing.run_id].error) == ("failed", "out of memory")
    assert (state[dup.run_id].status, state[dup.run_id].cached_from_id) == ("cached", first.run_id)
    assert counts(engine) == (6, 2, 0)


def test_a_batch_naming_a_missing_run_writes_nothing(engine, team_token):
    (r,) = setup_claimed(engine, [make_run(0)])
    with session_scope(engine) as s:
        with pytest.raises(NotFound, match="run 999"):
            queue.complete_runs(s, [queue.Finished(r.run_id, done_result(r.config)), queue.Finished(999, done_result(r.config))],
                                worker="w1")
    with session_scope(engine) as s:
        assert s.get(Run, r.run_id).status == "running"
    assert counts(engine) == (0, 0, 0)

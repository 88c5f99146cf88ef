"""The scheduler's logic and the group task body on SQLite, with in-process launchers (no Ray)."""

from __future__ import annotations

import threading
import time

import pytest

from kbit.db import connect, queries, queue, session_scope, teams
from kbit.errors import AuthError, PermissionDenied
from kbit.service import Operations
from kbit.service.grouprun import noop_evaluate, run_group
from kbit.service.scheduler import GroupInfo, Scheduler
from tests.support.scheduling import ThreadLauncher, drain, make_sweep, runs_of, submit


def test_submit_checks_the_token_and_writes_nothing_on_a_wrong_one(db):
    engine = db[0]
    with pytest.raises(AuthError, match="wrong token"):
        Operations(engine).submit(make_sweep().spec(), "nlp", "not-the-token")
    with pytest.raises(AuthError, match="unknown team"):
        Operations(engine).submit(make_sweep().spec(), "nobody", db[3])
    assert Operations(engine).sweeps() == []


def test_groups_by_model_up_to_capacity_and_every_run_done_once(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a", "m/b", "m/c")))
    assert reply["total"] == 3 * 5 and reply["queued"] == 15
    launcher = ThreadLauncher(url, capacity=2)
    scheduler = Scheduler(engine, launcher, lease_seconds=30)
    scheduler.fill()
    assert len(scheduler.inflight) == 2  # capacity, not more
    drain(scheduler)
    rows = runs_of(engine, reply["sweep_id"])
    assert [r["status"] for r in rows] == ["done"] * 15
    assert all(r["attempts"] == 1 for r in rows)
    assert all(len(models) == 1 for _, _, models in launcher.launched)  # one model per task
    claimed = [i for _, ids, _ in launcher.launched for i in ids]
    assert sorted(claimed) == sorted(r["run_id"] for r in rows)  # each run claimed exactly once


def test_group_size_spreads_one_model_over_free_slots(db):
    engine, url, *_ = db
    submit(db, make_sweep(models=("m/a",), bits=(2, 3, 4, 5, 6, 7, 8)))  # 1 + 14 runs of one model
    scheduler = Scheduler(engine, ThreadLauncher(url, capacity=4), max_runs_per_group=64)
    assert scheduler.group_size(4) == 4  # ceil(15 / 4)
    assert Scheduler(engine, ThreadLauncher(url), max_runs_per_group=3).group_size(1) == 3


def test_a_model_measured_short_gets_groups_that_fill_group_seconds(db):
    engine, url, *_ = db
    scheduler = Scheduler(engine, ThreadLauncher(url), max_runs_per_group=2, group_seconds=30)
    assert scheduler.runs_per_group("m/a") == 2  # not measured yet
    for model, seconds_for_two in [("m/fast", 1.0), ("m/mid", 10.0), ("m/slow", 40.0)]:
        scheduler._measure(model, {"load_and_eval_s": seconds_for_two, "unfinished": []}, 2)
    assert scheduler.runs_per_group("m/fast") == 32  # 60 fit in 30 s: capped at 16 x 2
    assert scheduler.runs_per_group("m/mid") == 6  # 5 s each
    assert scheduler.runs_per_group("m/slow") == 2  # never fewer than max_runs_per_group
    scheduler._measure("m/mid", {"load_and_eval_s": 2.0, "unfinished": []}, 2)  # 1 s each now: the mean is 3 s
    assert scheduler.runs_per_group("m/mid") == 10
    scheduler._measure("m/fast", {"load_and_eval_s": 0.1, "unfinished": [1, 2]}, 2)  # nothing done: no measure
    assert scheduler.runs_per_group("m/fast") == 32
    off = Scheduler(engine, ThreadLauncher(url), max_runs_per_group=2)  # group_seconds 0: always 2
    off._measure("m/fast", {"load_and_eval_s": 0.001, "unfinished": []}, 2)
    assert off.runs_per_group("m/fast") == 2


def test_the_tail_of_a_model_measured_short_is_not_cut_below_half_a_group(db):
    """The even split over the slots shrinks at the tail of the queue; a model whose runs are
    short keeps groups of at least half of what fills group_seconds (fewer groups, fewer loads),
    while a model of long or unmeasured runs follows the split."""
    engine, url, *_ = db
    scheduler = Scheduler(engine, ThreadLauncher(url), max_runs_per_group=2, group_seconds=30)
    scheduler._measure("m/fast", {"load_and_eval_s": 1.0, "unfinished": []}, 2)  # 32 per group
    scheduler._measure("m/mid", {"load_and_eval_s": 10.0, "unfinished": []}, 2)  # 6 per group
    scheduler._measure("m/slow", {"load_and_eval_s": 40.0, "unfinished": []}, 2)  # 2 per group
    assert [scheduler.group_limit("m/fast", split) for split in (100, 20, 3)] == [32, 20, 16]
    assert [scheduler.group_limit("m/mid", split) for split in (100, 4, 1)] == [6, 4, 3]
    assert [scheduler.group_limit(model, 1) for model in ("m/slow", "m/new")] == [1, 1]


def test_a_sweep_of_short_runs_ends_in_fewer_groups_than_the_even_split_gives(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a",), bits=(2, 3, 4, 5, 6, 7, 8), blocksizes=(64, 128, 256)))  # 43
    launcher = ThreadLauncher(url, capacity=8)
    scheduler = Scheduler(engine, launcher, max_runs_per_group=2, group_seconds=30)
    scheduler._measure("m/a", {"load_and_eval_s": 0.01, "unfinished": []}, 2)  # 32 per group
    scheduler.fill()
    drain(scheduler)
    assert [len(ids) for _, ids, _ in launcher.launched] == [16, 16, 11]  # the split (6) would make 8 groups
    assert [r["status"] for r in runs_of(engine, reply["sweep_id"])] == ["done"] * 43


def test_after_a_group_of_short_runs_the_next_groups_are_larger(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a",), bits=(2, 3, 4, 5, 6, 7, 8), blocksizes=(64, 128, 256)))
    assert reply["total"] == 43
    launcher = ThreadLauncher(url, capacity=1)
    scheduler = Scheduler(engine, launcher, max_runs_per_group=2, group_seconds=3600)  # any run counts as short
    scheduler.fill()
    drain(scheduler)
    assert [len(ids) for _, ids, _ in launcher.launched] == [2, 32, 9]  # then 16 x 2, then the rest
    assert [r["status"] for r in runs_of(engine, reply["sweep_id"])] == ["done"] * 43


def test_the_last_model_is_split_over_the_cluster_not_given_to_the_one_free_slot(db):
    """One slot busy, one model left: it gets half the remaining runs, so the slot that frees up
    next takes the other half instead of idling while one worker does them all."""
    engine, url, *_ = db
    submit(db, make_sweep(models=("m/a",), bits=(2, 3, 4, 5, 6, 7, 8)))  # 15 runs
    launcher = ThreadLauncher(url, capacity=2)
    scheduler = Scheduler(engine, launcher, max_runs_per_group=64)
    scheduler.inflight[object()] = GroupInfo("busy-worker", [], "m/other")
    scheduler.fill()
    assert [len(ids) for _, ids, _ in launcher.launched] == [8]  # ceil(15 / 2), not 15


def test_a_dead_worker_requeues_its_unfinished_runs_with_the_error_kept(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a",)))
    first_task = threading.Event()

    def crash_once(worker, runs):
        if first_task.is_set():
            return False
        first_task.set()
        return True

    scheduler = Scheduler(engine, ThreadLauncher(url, capacity=1, crash=crash_once), lease_seconds=30,
                          max_runs_per_group=64)
    scheduler.tick(wait_s=0)
    scheduler.harvest(wait_s=5)  # the crashed task
    assert scheduler.stats["groups_failed"] == 1
    rows = runs_of(engine, reply["sweep_id"])
    done = [r for r in rows if r["status"] == "done"]
    queued = [r for r in rows if r["status"] == "queued"]
    assert len(done) == 1 and len(queued) == 4  # the result stored before the crash is kept
    assert all("died" in r["error"] and "WorkerCrashedError" in r["error"] for r in queued)
    drain(scheduler)
    rows = runs_of(engine, reply["sweep_id"])
    assert [r["status"] for r in rows] == ["done"] * 5
    assert sorted(r["attempts"] for r in rows) == [1, 2, 2, 2, 2]


def test_retries_are_bounded_and_the_last_error_is_kept(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a",), bits=(4,), dtypes=("nf",), extra="max_attempts: 2\n",
                                  name="bounded"))
    always = ThreadLauncher(url, capacity=1, crash=lambda worker, runs: True, results_before_crash=0)
    scheduler = Scheduler(engine, always, lease_seconds=30)
    drain(scheduler)
    rows = runs_of(engine, reply["sweep_id"])
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["attempts"] == 2 and "WorkerCrashedError" in r["error"] for r in rows)
    assert scheduler.stats["groups_failed"] == 2  # one task per attempt, then no more


def test_results_are_stored_as_they_arrive(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a",), bits=(4,), dtypes=("int", "nf", "fp")))
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w1", limit=10, lease_seconds=30)
    runs = [{"run_id": c.run_id, "model": c.model, "revision": c.revision, "config": c.config, "eval": c.eval}
            for c in claimed]
    seen_done = []

    def evaluate(model, revision, configs, eval_spec, should_stop):
        for i, result in enumerate(noop_evaluate(model, revision, configs, eval_spec, should_stop)):
            with session_scope(engine) as s:
                seen_done.append(queue.sweep_progress(s, reply["sweep_id"])["done"])
            yield result

    summary = run_group(url, "w1", runs, evaluate, lease_seconds=30, flush_s=0)  # every run counts as slow
    assert summary["stored"] == 4 and summary["unfinished"] == []
    assert seen_done == [0, 1, 2, 3]  # before config i, the i earlier results are already in the database


def claimed_group(db, **sweep):
    engine, url, *_ = db
    reply = submit(db, make_sweep(**sweep))
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w1", limit=16, lease_seconds=30)
    runs = [{"run_id": c.run_id, "model": c.model, "revision": c.revision, "config": c.config, "eval": c.eval}
            for c in claimed]
    return reply, runs


def test_short_runs_are_written_a_batch_per_transaction_with_their_own_times(db, monkeypatch):
    engine, url, *_ = db
    reply, runs = claimed_group(db, models=("m/a",), bits=(3, 4, 5), dtypes=("int", "nf"))  # 7 runs
    real, sessions = queue.complete_runs, []

    def counting(session, finished, **kw):
        sessions.extend([session] * len(finished))  # the objects, kept alive, so no two share an id
        return real(session, finished, **kw)

    monkeypatch.setattr(queue, "complete_runs", counting)

    def evaluate(model, revision, configs, eval_spec, should_stop):
        for result in noop_evaluate(model, revision, configs, eval_spec, should_stop):
            time.sleep(0.02)
            yield result

    summary = run_group(url, "w1", runs, evaluate, lease_seconds=30, heartbeat_seconds=60, batch=3, flush_s=60)
    assert summary["stored"] == 7 and summary["unfinished"] == []
    assert len(sessions) == 7 and len({id(x) for x in sessions}) == 3  # 3 + 3, then the last one at the end
    from datetime import datetime

    with session_scope(engine) as s:
        details = [queries.run_detail(s, r["run_id"]) for r in runs]
    times = [(datetime.fromisoformat(str(d["started_at"])), datetime.fromisoformat(str(d["finished_at"])))
             for d in details]
    assert len({f for _, f in times}) == 7  # each its own finish, not the batch's commit
    assert all((f - b).total_seconds() >= 0.015 for b, f in times)  # its own 20 ms run, stamped as it ran
    assert all(later[0] >= earlier[1] for earlier, later in zip(times, times[1:]))


def test_a_result_waiting_in_a_batch_is_written_while_the_next_run_is_long(db):
    engine, url, *_ = db
    reply, runs = claimed_group(db, models=("m/a",), bits=(4,), dtypes=("nf",))  # baseline + nf4
    first_stored = []

    def evaluate(model, revision, configs, eval_spec, should_stop):
        results = noop_evaluate(model, revision, configs, eval_spec, should_stop)
        yield next(results)  # short: it waits for a batch
        for _ in range(200):  # the second run lasts until the heartbeat thread has written the first
            with session_scope(engine) as s:
                if queue.sweep_progress(s, reply["sweep_id"])["done"] == 1:
                    first_stored.append(True)
                    break
            time.sleep(0.05)
        yield next(results)

    summary = run_group(url, "w1", runs, evaluate, lease_seconds=30, flush_s=0.2)
    assert first_stored and summary["stored"] == 2


def cancelling_evaluate(started: list, at: int, cancel):
    """kbit's no-op evaluator that appends each config it starts to `started` (after asking
    should_stop) and calls `cancel` as it starts the `at`-th."""

    def evaluate(model, revision, configs, eval_spec, should_stop):
        for config in configs:
            if should_stop():
                return
            started.append(config)
            if len(started) == at:
                cancel()
            yield next(iter(noop_evaluate(model, revision, [config], eval_spec, lambda: False)))

    return evaluate


def test_a_cancelled_sweep_stops_its_group_and_nothing_more_is_written(db):
    engine, url, team, token = db
    reply, runs = claimed_group(db, models=("m/a",), bits=(4,), dtypes=("int", "nf", "fp"))
    started = []
    evaluate = cancelling_evaluate(started, 2, lambda: Operations(engine).cancel(reply["sweep_id"], team, token))
    summary = run_group(url, "w1", runs, evaluate, lease_seconds=30, heartbeat_seconds=0.05, check_s=0,
                        flush_s=0)  # a result not yet written when the cancel comes is cancelled with its run
    assert len(started) == 2  # stopped before the third config
    assert summary["stored"] == 1 and summary["skipped"] == 1
    statuses = sorted(r["status"] for r in runs_of(engine, reply["sweep_id"]))
    assert statuses == ["cancelled", "cancelled", "cancelled", "done"]


def test_asking_between_configs_whether_runs_are_still_held_writes_no_lease(db):
    """should_stop reads the runs' holders; only the heartbeat thread renews leases. A cancel
    still stops the group before its next config."""
    from sqlalchemy import event

    engine, url, team, token = db
    reply, runs = claimed_group(db, models=("m/a",), bits=(3, 4, 5), dtypes=("int", "nf"))  # 7 runs
    worker_engine = connect(url)
    renewals = []
    event.listen(worker_engine, "before_cursor_execute",
                 lambda *args: renewals.append(args[2]) if "SET lease_expires_at" in args[2] else None)
    asked = []
    evaluate = cancelling_evaluate(asked, 4, lambda: Operations(engine).cancel(reply["sweep_id"], team, token))
    try:
        summary = run_group(url, "w1", runs, evaluate, lease_seconds=300, heartbeat_seconds=100, check_s=0,
                            flush_s=0, engine=worker_engine)
    finally:
        worker_engine.dispose()
    assert len(asked) == 4 and summary["stored"] == 3  # asked before each config; stopped by the cancel
    assert renewals == []  # five answers, not one lease written


def test_each_run_records_its_own_start(db):
    """Claiming starts a whole group at once; each run's started_at is when the worker began it."""
    engine, url, *_ = db
    submit(db, make_sweep(models=("m/a",), bits=(4,), dtypes=("int", "nf", "fp")))
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w1", limit=10, lease_seconds=30)
    runs = [{"run_id": c.run_id, "model": c.model, "revision": c.revision, "config": c.config, "eval": c.eval}
            for c in claimed]

    def evaluate(model, revision, configs, eval_spec, should_stop):
        for result in noop_evaluate(model, revision, configs, eval_spec, should_stop):
            time.sleep(0.3)
            yield result

    assert run_group(url, "w1", runs, evaluate, lease_seconds=30)["stored"] == 4
    from datetime import datetime

    with session_scope(engine) as s:
        details = [queries.run_detail(s, r["run_id"]) for r in runs]
    times = [{k: datetime.fromisoformat(str(d[k])) for k in ("started_at", "finished_at")} for d in details]
    starts = [t["started_at"] for t in times]
    assert len(set(starts)) == 4 and starts == sorted(starts)
    for earlier, later in zip(times, times[1:]):
        assert later["started_at"] >= earlier["finished_at"]  # the next run starts after the previous ends
    assert all((t["finished_at"] - t["started_at"]).total_seconds() >= 0.25 for t in times)


def test_a_transient_failure_goes_back_to_the_queue_until_its_attempts_are_spent(db):
    engine, url, *_ = db
    submit(db, make_sweep(models=("m/a",), bits=(4,), dtypes=("nf",), extra="max_attempts: 2\n"))

    def unreachable_hub(model, revision, configs, eval_spec, should_stop):
        for result in noop_evaluate(model, revision, configs, eval_spec, should_stop):
            yield dict(result, status="failed", error_type="model_unavailable", error="hub down", retryable=True)

    for attempt, expected in ((1, "queued"), (2, "failed")):
        with session_scope(engine) as s:
            claimed = queue.claim_runs(s, worker=f"w{attempt}", limit=10, lease_seconds=30)
        runs = [{"run_id": c.run_id, "model": c.model, "revision": c.revision, "config": c.config, "eval": c.eval}
                for c in claimed]
        summary = run_group(url, f"w{attempt}", runs, unreachable_hub, lease_seconds=30)
        assert summary["unfinished"] == [] and summary["retried"] == (2 if expected == "queued" else 0)
        with session_scope(engine) as s:
            rows = [queries.run_detail(s, r["run_id"]) for r in runs]
        assert {(r["status"], r["attempts"], r["error_type"]) for r in rows} == {(expected, attempt, "model_unavailable")}


@pytest.mark.slow
def test_a_finished_result_waits_out_a_database_outage(db, monkeypatch):
    """The database drops while a result is being stored: the worker keeps the result and writes it
    when the database answers again, instead of dying and losing the finished work."""
    from kbit.errors import DatabaseUnreachable

    engine, url, *_ = db
    submit(db, make_sweep(models=("m/a",), bits=(4,), dtypes=("nf",)))
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w1", limit=10, lease_seconds=30)
    runs = [{"run_id": c.run_id, "model": c.model, "revision": c.revision, "config": c.config, "eval": c.eval}
            for c in claimed]
    real, failures = queue.complete_runs, []

    def outage_then_back(session, finished, **kw):
        if len(failures) < 3:
            failures.append([x.run_id for x in finished])
            raise DatabaseUnreachable("cannot open the database: server closed the connection")
        return real(session, finished, **kw)

    monkeypatch.setattr(queue, "complete_runs", outage_then_back)
    summary = run_group(url, "w1", runs, noop_evaluate, lease_seconds=30)
    assert failures and summary["stored"] == 2 and summary["unfinished"] == []
    with session_scope(engine) as s:
        assert {queries.run_detail(s, r["run_id"])["status"] for r in runs} == {"done"}


class TaskCancelledError(RuntimeError):
    """Stands in for Ray's error when a task is cancelled."""


def hanging_at(bits, launcher):
    """An evaluator that hangs on every `bits`-bit config until the launcher cancels its task."""
    def evaluate(model, revision, configs, eval_spec, should_stop):
        for config in configs:
            if should_stop():
                return
            if config["bits"] == bits:
                assert launcher.cancel_event.wait(30), "the hung task was never cancelled"
                raise TaskCancelledError("task cancelled")
            yield from noop_evaluate(model, revision, [config], eval_spec, lambda: False)
    return evaluate


@pytest.mark.slow
def test_a_hung_run_fails_with_timeout_and_its_task_is_stopped(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a",), bits=(4, 8), dtypes=("int", "nf"), extra="run_timeout_s: 1\n"))
    launcher = ThreadLauncher(url, capacity=1)
    launcher.evaluate = hanging_at(8, launcher)
    scheduler = Scheduler(engine, launcher, lease_seconds=30, max_runs_per_group=16)
    drain(scheduler, rounds=400)
    rows = {r["label"]: r for r in runs_of(engine, reply["sweep_id"])}
    assert {label: r["status"] for label, r in rows.items()} == {
        "16bit": "done", "int4-b64": "done", "nf4-b64": "done", "int8-b64": "failed", "nf8-b64": "failed"}
    assert {rows[label]["error_type"] for label in ("int8-b64", "nf8-b64")} == {"timeout"}
    assert "longer than its limit of 1 s" in rows["int8-b64"]["error"]
    assert scheduler.stats["runs_timed_out"] == 2 and len(launcher.cancelled) == 2
    assert scheduler.stats["groups_failed"] == 0  # a task the scheduler stopped did not "die"
    # nf8 waited behind the hung int8 in the first task: that stop does not count as its attempt
    assert (rows["int8-b64"]["attempts"], rows["nf8-b64"]["attempts"]) == (1, 1)


@pytest.mark.slow
def test_cancelling_a_sweep_stops_its_running_task_mid_config(db):
    engine, url, team, token = db
    reply = submit(db, make_sweep(models=("m/a",), bits=(8,), dtypes=("int", "nf")))
    launcher = ThreadLauncher(url, capacity=1)
    launcher.evaluate = hanging_at(8, launcher)
    scheduler = Scheduler(engine, launcher, lease_seconds=30, max_runs_per_group=16)
    for _ in range(100):
        scheduler.tick(wait_s=0.05)
        if any(r["status"] == "done" for r in runs_of(engine, reply["sweep_id"])):
            break  # the baseline is done: the task hangs in its first 8-bit config now
    Operations(engine).cancel(reply["sweep_id"], team, token)
    drain(scheduler)
    assert len(launcher.cancelled) == 1
    assert sorted(r["status"] for r in runs_of(engine, reply["sweep_id"])) == ["cancelled", "cancelled", "done"]


def test_a_priority_above_the_teams_limit_needs_an_operator(db):
    engine, _, team, token = db
    urgent = make_sweep(name="urgent", extra="priority: 5\n")
    with pytest.raises(PermissionDenied, match=r"priority 5 is above team 'nlp'.s limit of 0.*kbit team priority nlp 5"):
        Operations(engine).submit(urgent.spec(), team, token)
    assert Operations(engine).sweeps() == []  # nothing written
    assert Operations(engine).submit(make_sweep(name="low", extra="priority: -3\n").spec(), team, token)["total"] == 10
    with session_scope(engine) as s:
        teams.set_max_priority(s, team, 5)  # the operator's decision, on the database
    assert Operations(engine).submit(urgent.spec(), team, token)["total"] == 10


@pytest.mark.parametrize("server_says", ["on", "off"])
def test_the_scheduler_vacuums_the_runs_table_only_while_autovacuum_is_off(fresh_postgres_database, server_says):
    from sqlalchemy import event

    def answer(conn, cursor, statement, parameters, context, executemany):
        return (f"SELECT '{server_says}'", parameters) if statement == "SHOW autovacuum" else (statement, parameters)

    with fresh_postgres_database() as url:
        engine = connect(url)
        event.listen(engine, "before_cursor_execute", answer, retval=True)
        try:
            scheduler = Scheduler(engine, ThreadLauncher(url), vacuum_every_s=1.0)
            scheduler.tick()
            assert scheduler.vacuuming is None  # not due yet
            time.sleep(1.1)
            scheduler.tick()
            first = scheduler.vacuuming
            scheduler.tick()  # not twice at once, and due again only a second after the last one ended
            assert scheduler.vacuuming is first
            if first is not None:
                first.join(60)
            assert scheduler.stats["vacuums"] == (1 if server_says == "off" else 0)
        finally:
            engine.dispose()

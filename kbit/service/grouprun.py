"""One group of claimed runs (one model) evaluated by one worker: what a worker actor runs for the scheduler.

Plain function, no Ray: it opens the database, keeps the runs' leases alive from a heartbeat
thread, evaluates the configs in order, and stores each result the moment it arrives. A run whose
lease it lost (cancelled, or re-leased after an expiry) is never written (`queue.complete_run`
checks the lease in the same transaction); when none of the remaining runs is held any more it
stops before the next config.

The evaluation itself is passed in, behind one signature:

    evaluate(model, revision, configs, eval_spec, should_stop[, cache=]) -> iterator of RunResult dicts

A long-lived worker passes its cache of loaded models as `cache` (kbit.workers.modelcache); a
caller without one (the in-process launchers of the tests) passes none, and the evaluator is then
called without it.

`kbit.workers.evaluate_group` is the real one (the cluster's launcher passes it); `noop_evaluate`
does no work at all, so the scheduler benchmark measures the scheduler's own overhead per run.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator

from kbit import settings
from kbit.db import connect, queue, session_scope
from kbit.service.retry import DATABASE_ERRORS, transient

Evaluate = Callable[[str, str, list, dict, Callable[[], bool]], Iterator[dict]]


def noop_evaluate(model: str, revision: str, configs: list[dict], eval_spec: dict, should_stop,
                  cache=None) -> Iterator[dict]:
    """A done result with no metrics for every config, instantly (scheduler overhead only)."""
    for config in configs:
        if should_stop():
            return
        yield {"config": config, "status": "done", "error_type": None, "error": None, "metrics": [], "bits": None,
               "wall_time_s": 0.0, "peak_memory_bytes": 0, "device": "none", "provenance": {"evaluator": "noop"},
               "samples": None}


class _Leases:
    """The set of run ids this worker still holds, renewed every `interval` seconds."""

    def __init__(self, engine, run_ids, worker, lease_seconds, interval):
        self.engine, self.worker, self.lease_seconds = engine, worker, lease_seconds
        self.pending = list(run_ids)
        self.held = set(run_ids)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True, name="kbit-heartbeat")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def renew(self) -> set:
        with self._lock:
            pending = list(self.pending)
        if not pending:
            return set()
        with session_scope(self.engine) as s:
            held = set(queue.heartbeat(s, pending, worker=self.worker, lease_seconds=self.lease_seconds))
        with self._lock:
            self.held = held & set(self.pending)
            return set(self.held)

    def finished(self, run_id: int) -> None:
        with self._lock:
            if run_id in self.pending:
                self.pending.remove(run_id)
            self.held.discard(run_id)

    def any_held(self) -> bool:
        """Whether any remaining run is still held: asked of the database (so a cancel shows at
        once), or, while the database does not answer, the last heartbeat's answer."""
        try:
            return bool(self.renew())
        except Exception:  # a flaky database must not end the evaluation; the heartbeat retries
            traceback.print_exc()
            with self._lock:
                return bool(self.held & set(self.pending))

    def _loop(self, interval):
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception:  # a flaky database must not kill the evaluation; the next beat retries
                traceback.print_exc()


def _marking_starts(results, engine, runs: list[dict], worker: str):
    """The evaluator's results, with each run's `started_at` set just before the evaluator starts
    on it (asking a generator for its next item is what starts the next config; the first one
    includes loading the model)."""
    iterator = iter(results)
    for run in runs:
        try:
            for attempt in transient(DATABASE_ERRORS, seconds=30.0):
                with attempt, session_scope(engine) as s:
                    queue.mark_started(s, run["run_id"], worker=worker)
        except DATABASE_ERRORS:  # only a timestamp: the evaluation goes on
            traceback.print_exc()
        try:
            yield next(iterator)
        except StopIteration:
            return


def run_group(
    db_url: str,
    worker: str,
    runs: list[dict],
    evaluate: Evaluate,
    lease_seconds: float = settings.LEASE_SECONDS,
    heartbeat_seconds: float | None = None,
    env: dict | None = None,
    cache=None,
    engine=None,
) -> dict:
    """Evaluate claimed runs of one (model, revision, eval) group; return counts of what happened
    (stored, skipped, and the ids of runs the evaluator gave no result for: `unfinished`).

    `runs` are ClaimedRun fields as dicts (run_id, model, revision, config, eval). `env` is applied
    to this process first (KBIT_HOME and Hugging Face cache settings of the service). `cache`
    (a long-lived worker's loaded models) is handed to the evaluator; `engine` is a long-lived
    worker's open database engine (else one is opened for this group and closed after it).
    """
    if env:
        os.environ.update({k: v for k, v in env.items() if v is not None})
    own_engine = engine is None
    engine = connect(db_url, upgrade=False) if own_engine else engine
    first = runs[0]
    by_index = {i: run["run_id"] for i, run in enumerate(runs)}
    counts = {"stored": 0, "skipped": 0, "retried": 0, "unfinished": [], "pid": os.getpid(), "load_and_eval_s": 0.0}
    interval = heartbeat_seconds or max(lease_seconds / 3.0, 0.5)
    started = time.perf_counter()
    try:
        with _Leases(engine, by_index.values(), worker, lease_seconds, interval) as leases:
            results = evaluate(
                first["model"], first["revision"], [r["config"] for r in runs], first["eval"], lambda: not leases.any_held(),
                **({} if cache is None else {"cache": cache}),
            )
            for index, result in enumerate(_marking_starts(results, engine, runs, worker)):
                run_id = by_index[index]
                # Stored only while this worker still holds the run (checked in the same transaction):
                # a run cancelled or re-leased since the last beat keeps its state.
                # A finished result waits for a database that went away, for as long as the lease lasts.
                for attempt in transient(DATABASE_ERRORS, seconds=max(lease_seconds, 30.0)):
                    with attempt, session_scope(engine) as s:
                        if result.get("status") == "failed" and result.get("retryable"):
                            # transient (the network, the hub): another attempt, while attempts are left
                            status = queue.fail_run(s, run_id, error=result.get("error") or "failed", worker=worker,
                                                    retryable=True, error_type=result.get("error_type"))
                            counts["retried"] += status == "queued"
                            stored = status in ("queued", "failed")
                        else:
                            stored = queue.complete_run(s, run_id, result, worker=worker)
                counts["stored" if stored else "skipped"] += 1
                leases.finished(run_id)
            counts["unfinished"] = list(leases.pending)
    finally:
        counts["load_and_eval_s"] = time.perf_counter() - started
        if own_engine:
            engine.dispose()
    return counts

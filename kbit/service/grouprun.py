"""One group of claimed runs (one model) evaluated by one worker: what a worker actor runs for the scheduler.

Plain function, no Ray: it opens the database, keeps the runs' leases alive from a heartbeat
thread, evaluates the configs in order, and stores the results: each the moment it arrives while
runs take `FLUSH_SECONDS` or more, several per transaction when they are shorter (`_Writes`; a
worker killed outright loses at most that much finished work, which runs again). A run whose
lease it lost (cancelled, or re-leased after an expiry) is never written (`queue.complete_runs`
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

# Runs shorter than FLUSH_SECONDS have their results written RESULT_BATCH at a time (or every
# FLUSH_SECONDS): a transaction per run set the pace of 64 workers on short runs (benchmarks/scale.md).
RESULT_BATCH = 16
FLUSH_SECONDS = 2.0
STOP_CHECK_SECONDS = 0.5  # a cancel stops a group within this, plus the config under way


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
    """The set of run ids this worker still holds, renewed every `interval` seconds (and asked of
    the database at most every `check_s` seconds between configs)."""

    def __init__(self, engine, run_ids, worker, lease_seconds, interval, check_s, tick):
        self.engine, self.worker, self.lease_seconds, self.check_s = engine, worker, lease_seconds, check_s
        self.pending = list(run_ids)
        self.held = set(run_ids)
        self.on_beat = lambda: None  # also called by the heartbeat thread, after each renewal
        self._asked = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval, min(tick, interval)), daemon=True,
                                        name="kbit-heartbeat")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def renew(self) -> set:
        """Renew the remaining runs' leases; return those this worker still holds."""
        return self._ask(lambda s, pending: queue.heartbeat(s, pending, worker=self.worker,
                                                            lease_seconds=self.lease_seconds))

    def check(self) -> set:
        """The remaining runs this worker still holds, read (between configs: the heartbeat thread
        renews, so asking costs no row writes)."""
        return self._ask(lambda s, pending: [r for r, owner in queue.holders(s, pending).items() if owner == self.worker])

    def _ask(self, query) -> set:
        with self._lock:
            pending = list(self.pending)
        if not pending:
            return set()
        with session_scope(self.engine) as s:
            held = set(query(s, pending))
        with self._lock:
            self._asked = time.monotonic()
            self.held = held & set(self.pending)
            return set(self.held)

    def finished(self, run_ids) -> None:
        with self._lock:
            self.pending = [r for r in self.pending if r not in run_ids]
            self.held -= set(run_ids)

    def any_held(self) -> bool:
        """Whether any remaining run is still held: asked of the database when the last answer is
        older than `check_s` (so a cancel shows within it; short runs do not each cost a round
        trip), or, while the database does not answer, the last heartbeat's answer."""
        with self._lock:
            if time.monotonic() - self._asked < self.check_s:
                return bool(self.held & set(self.pending))
        try:
            return bool(self.check())
        except Exception:  # a flaky database must not end the evaluation; the heartbeat retries
            traceback.print_exc()
            with self._lock:
                return bool(self.held & set(self.pending))

    def _loop(self, interval, tick):
        """Renew every `interval` seconds; call `on_beat` every `tick` (results waiting on a long run)."""
        renewed = time.monotonic()
        while not self._stop.wait(tick):
            try:
                if time.monotonic() - renewed >= interval - 1e-3:
                    renewed = time.monotonic()
                    self.renew()
                self.on_beat()
            except Exception:  # a flaky database must not kill the evaluation; the next beat retries
                traceback.print_exc()


class _Writes:
    """What the worker owes the database: each run's start, and its result once finished, with
    the monotonic time each happened (written as "that many seconds ago" by the lease clock).

    Written in one transaction per flush: at once while runs are slow (a run took `flush_s` or
    more), else every `batch` results or when the oldest has waited `flush_s`, so short runs do not
    each cost a transaction. The heartbeat thread flushes too, so a result never waits on a long
    next run (nor past its lease: the lease is renewed until the result is written).
    """

    def __init__(self, engine, worker, leases: _Leases, counts: dict, batch: int, flush_s: float, retry_s: float):
        self.engine, self.worker, self.leases, self.counts = engine, worker, leases, counts
        self.batch, self.flush_s, self.retry_s = batch, flush_s, retry_s
        # (run id, result, started, finished, whether its start is written)
        self.results: list[tuple[int, dict, float, float, bool]] = []
        self.current: list | None = None  # [run id, started, written] of the run under way
        self._lock = threading.Lock()

    def started(self, run_id: int) -> None:
        """The evaluator starts on `run_id` now; write what is due (this start goes with it)."""
        with self._lock:
            self.current = [run_id, time.monotonic(), False]
        self.flush(due_only=True, wait=False)

    def finished(self, run_id: int, result: dict) -> None:
        """`run_id` ended with `result` now."""
        with self._lock:
            now = time.monotonic()
            _, started, written = self.current if self.current and self.current[0] == run_id else (run_id, now, False)
            self.current = None
            self.results.append((run_id, result, started, now, written))

    def _due(self) -> bool:
        if not self.results:
            return False
        _, _, started, finished, _ = self.results[-1]
        waited = time.monotonic() - self.results[0][3]
        return len(self.results) >= self.batch or waited >= self.flush_s or finished - started >= self.flush_s

    def flush(self, due_only: bool = False, wait: bool = True) -> None:
        """Write what is owed in one transaction, retried while the database is away for as long as
        a lease lasts. With `due_only`: only when results are due; without `wait`: not if another
        thread is writing now (it writes for both)."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            if due_only and not self._due():
                return
            results = list(self.results)
            current = None if self.current is None or self.current[2] else tuple(self.current)
            if not results and current is None:
                return
            for attempt in transient(DATABASE_ERRORS, seconds=self.retry_s):
                with attempt, session_scope(self.engine) as s:
                    outcomes = self._write(s, results, current)
            del self.results[:len(results)]
            if current is not None and self.current is not None and self.current[0] == current[0]:
                self.current[2] = True
            for stored, retried in outcomes:
                self.counts["stored" if stored else "skipped"] += 1
                self.counts["retried"] += retried
            self.leases.finished({run_id for run_id, *_ in results})
        finally:
            self._lock.release()

    def flush_quietly(self) -> None:
        """Flush once (no retries) without raising: on the way out of a failed evaluation."""
        self.retry_s = 0.0
        try:
            self.flush()
        except Exception:
            traceback.print_exc()

    def on_beat(self) -> None:
        """From the heartbeat thread: results that waited `flush_s`, and a start not yet written."""
        with self._lock:
            waiting = bool(self.results) and time.monotonic() - self.results[0][3] >= self.flush_s
            unwritten = self.current is not None and not self.current[2]
        if waiting or unwritten:
            self.flush(wait=False)

    def _write(self, s, results, current) -> list[tuple[bool, bool]]:
        now = time.monotonic()
        outcomes: dict[int, tuple[bool, bool]] = {}
        finished = []
        for run_id, result, started, ended, start_written in results:
            if result.get("status") == "failed" and result.get("retryable"):
                # transient (the network, the hub): another attempt, while attempts are left
                status = queue.fail_run(s, run_id, error=result.get("error") or "failed", worker=self.worker,
                                        retryable=True, error_type=result.get("error_type"))
                outcomes[run_id] = (status in ("queued", "failed"), status == "queued")
            else:
                finished.append(queue.Finished(run_id, result, ago=now - ended,
                                               started_ago=None if start_written else now - started))
        if finished:
            stored = queue.complete_runs(s, finished, worker=self.worker)
            outcomes.update({x.run_id: (ok, False) for x, ok in zip(finished, stored)})
        if current is not None:
            queue.mark_started(s, current[0], worker=self.worker, ago=now - current[1])
        return [outcomes[run_id] for run_id, *_ in results]


def _announcing_starts(results, runs: list[dict], writes: _Writes):
    """The evaluator's results, each run's start announced to `writes` just before the evaluator
    starts on it (asking a generator for its next item is what starts the next config; the first
    one includes loading the model)."""
    iterator = iter(results)
    for run in runs:
        writes.started(run["run_id"])
        try:
            yield run["run_id"], next(iterator)
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
    batch: int = RESULT_BATCH,
    flush_s: float = FLUSH_SECONDS,
    check_s: float = STOP_CHECK_SECONDS,
) -> dict:
    """Evaluate claimed runs of one (model, revision, eval) group; return counts of what happened
    (stored, skipped, and the ids of runs the evaluator gave no result for: `unfinished`).

    `runs` are ClaimedRun fields as dicts (run_id, model, revision, config, eval). `env` is applied
    to this process first (KBIT_HOME and Hugging Face cache settings of the service). `cache`
    (a long-lived worker's loaded models) is handed to the evaluator; `engine` is a long-lived
    worker's open database engine (else one is opened for this group and closed after it).
    `batch`, `flush_s`: how results of short runs are grouped into transactions (`_Writes`);
    `check_s`: how stale the answer to "is any run still held" may be between configs.
    """
    if env:
        os.environ.update({k: v for k, v in env.items() if v is not None})
    own_engine = engine is None
    engine = connect(db_url, upgrade=False) if own_engine else engine
    first = runs[0]
    counts = {"stored": 0, "skipped": 0, "retried": 0, "unfinished": [], "pid": os.getpid(), "load_and_eval_s": 0.0}
    interval = heartbeat_seconds or max(lease_seconds / 3.0, 0.5)
    started = time.perf_counter()
    try:
        tick = flush_s if flush_s > 0 else interval
        with _Leases(engine, [r["run_id"] for r in runs], worker, lease_seconds, interval, check_s, tick) as leases:
            # A finished result waits for a database that went away, for as long as the lease lasts;
            # it is written only while this worker still holds the run (checked in the same
            # transaction): a run cancelled or re-leased since the last beat keeps its state.
            writes = _Writes(engine, worker, leases, counts, batch, flush_s, retry_s=max(lease_seconds, 30.0))
            leases.on_beat = writes.on_beat
            results = evaluate(
                first["model"], first["revision"], [r["config"] for r in runs], first["eval"], lambda: not leases.any_held(),
                **({} if cache is None else {"cache": cache}),
            )
            try:
                for run_id, result in _announcing_starts(results, runs, writes):
                    writes.finished(run_id, result)
            except BaseException:
                writes.flush_quietly()  # what finished before the failure is kept; the failure goes on
                raise
            writes.flush()
            counts["unfinished"] = list(leases.pending)
    finally:
        counts["load_and_eval_s"] = time.perf_counter() - started
        if own_engine:
            engine.dispose()
    return counts

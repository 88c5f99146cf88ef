"""The scheduler without Ray, for the tests of several folders: sweeps written as text and
submitted, an in-process launcher that runs groups in threads (and can make a "worker" die), and
draining the queue."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

from kbit.db import queries, session_scope
from kbit.service import Operations
from kbit.service.grouprun import noop_evaluate, run_group
from kbit.sweeps.reader import parse_sweep


def make_sweep(name="t", models=("m/a", "m/b"), bits=(4, 8), dtypes=("int", "nf"), blocksizes=(64,), tasks=("x",),
               family_members=None, extra=""):
    text = (
        f"name: {name}\nmodels: [{', '.join(models)}]\n"
        f"grid: {{bits: [{', '.join(map(str, bits))}], dtypes: [{', '.join(dtypes)}], "
        f"blocksizes: [{', '.join(map(str, blocksizes))}]}}\n"
        f"tasks: [{', '.join(tasks)}]\n{extra}"
    )
    return parse_sweep(text, family_members=family_members or (lambda f: []))


def submit(db, sweep, **kw):
    engine, _, team, token = db
    return Operations(engine).submit(sweep.spec(), team, token, **kw)


class WorkerCrashedError(RuntimeError):
    """Stands in for Ray's error when a worker process dies."""


class ThreadLauncher:
    """Runs group tasks in threads; `crash(worker, runs)` decides whether a task dies after
    `results_before_crash` results."""

    def __init__(self, db_url, capacity=2, evaluate=noop_evaluate, crash=lambda worker, runs: False,
                 results_before_crash=1):
        self.db_url, self.slots, self.evaluate, self.crash = db_url, capacity, evaluate, crash
        self.results_before_crash = results_before_crash
        self.pool = ThreadPoolExecutor(max_workers=capacity)
        self.launched = []
        self.cancelled = []  # handles the scheduler cancelled
        self.cancel_event = threading.Event()  # a thread cannot be killed: a hung evaluator waits on this

    def capacity(self):
        return self.slots

    def launch(self, worker, runs, slot=None, need_bytes=None):
        self.launched.append((worker, [r["run_id"] for r in runs], {r["model"] for r in runs}))
        evaluate = self.evaluate
        if self.crash(worker, runs):
            def evaluate(*args):  # some results, then the "worker" dies
                results = noop_evaluate(*args)
                for _ in range(self.results_before_crash):
                    yield next(results)
                raise WorkerCrashedError("the worker process died unexpectedly (SIGKILL)")
        self.cancel_event.clear()
        return self.pool.submit(run_group, self.db_url, worker, runs, evaluate, 30.0)

    def cancel(self, handle):
        self.cancelled.append(handle)
        self.cancel_event.set()

    def wait(self, handles, timeout):
        done, _ = wait(handles, timeout=timeout)
        return [(f, None if f.exception() else f.result(), f.exception()) for f in done]


def drain(scheduler, rounds=200):
    for _ in range(rounds):
        scheduler.tick(wait_s=0.05)
        if not scheduler.inflight:
            with session_scope(scheduler.engine) as s:
                if not any(x["queued"] or x["running"] for x in queries.list_sweeps(s)):
                    return
    raise AssertionError("scheduler did not drain the queue")


def runs_of(engine, sweep_id):
    with session_scope(engine) as s:
        return queries.results_rows(s, sweep_id=sweep_id)

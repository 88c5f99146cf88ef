"""Helpers for the cluster tests (a module name no other test folder uses)."""

from __future__ import annotations

from tests.support.net import wait_until
from tests.support.paths import REPO  # noqa: F401 (the cluster tests take it from here)


def slow_evaluate(model, revision, configs, eval_spec, should_stop, cache=None):
    """A stand-in evaluator for fault tests: 0.4 s per config and one metric per result, so a
    worker can be killed mid-group and every stored result counted."""
    import os
    import time

    for i, config in enumerate(configs):
        if should_stop():
            return
        time.sleep(0.4)
        yield {
            "config": config, "status": "done", "error_type": None, "error": None,
            "metrics": [{"task": "t", "metric": "acc", "value": 0.5 + 0.01 * i, "stderr": 0.01}],
            "bits": None, "wall_time_s": 0.4, "peak_memory_bytes": 0, "device": "cpu",
            "provenance": {"pid": os.getpid()}, "samples": None,
        }


def hang_at_8_bits(model, revision, configs, eval_spec, should_stop, cache=None):
    """slow_evaluate, except that an 8-bit config never finishes (a hung run)."""
    import time

    for config in configs:
        if should_stop():
            return
        if config["bits"] == 8:
            time.sleep(3600)
        yield from slow_evaluate(model, revision, [config], eval_spec, lambda: False)


def results_per_run(engine, sweep_id) -> dict[int, int]:
    """run id -> how many metric rows it stored for t/acc (exactly one when nothing was duplicated)."""
    from sqlalchemy import func, select

    from kbit.db import session_scope
    from kbit.db.models import Result, Run

    with session_scope(engine) as s:
        runs = s.scalars(select(Run.id).where(Run.sweep_id == sweep_id)).all()
        counts = dict(
            s.execute(
                select(Result.run_id, func.count()).join(Run, Run.id == Result.run_id)
                .where(Run.sweep_id == sweep_id, Result.task == "t").group_by(Result.run_id)
            ).all()
        )
    return {run_id: counts.get(run_id, 0) for run_id in runs}


def group_task_pids() -> list[int]:
    """Worker actor processes running a group right now (Ray titles them ray::WorkerActor.run)."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("ray::WorkerActor.run"):
            pids.append(proc.pid)
    return pids


def worker_pids() -> list[int]:
    """Every worker actor process (busy or idle)."""
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if " ".join(p.info["cmdline"] or []).startswith("ray::WorkerActor")]


def wait_for_free_cpus(timeout: float = 120.0) -> None:
    """Until the shared head's CPUs are all free: an earlier test's scheduler gives its idle
    workers' CPUs back after KBIT_WORKER_IDLE_S (3 s on the test head) once their last group ends."""
    import ray

    wait_until(lambda: ray.available_resources().get("CPU", 0) >= ray.cluster_resources().get("CPU", 0), timeout)


def placed_evaluate(model, revision, configs, eval_spec, should_stop, cache=None):
    """slow_evaluate through a worker's model cache (a 0.3 s "load" on a miss), recording where and
    when each config ran: the worker's node, process, GPU share and ids, start and end times."""
    import os
    import time

    import ray

    context = ray.get_runtime_context()
    where = {"pid": os.getpid(), "node_id": context.get_node_id(), "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
             "gpu_share": context.get_assigned_resources().get("GPU", 0.0)}
    with cache.use((model, revision), lambda: time.sleep(0.3) or {"model": model}, lambda loaded: 1):
        for i, config in enumerate(configs):
            if should_stop():
                return
            started = time.time()
            time.sleep(0.4)
            yield {
                "config": config, "status": "done", "error_type": None, "error": None,
                "metrics": [{"task": "t", "metric": "acc", "value": 0.5 + 0.01 * i, "stderr": 0.01}],
                "bits": None, "wall_time_s": 0.4, "peak_memory_bytes": 0, "device": "cpu",
                "provenance": {**where, "model": model, "start": started, "end": time.time()}, "samples": None,
            }


def gated(evaluate, gate: str):
    """`evaluate` whose groups, after each config, wait until the file `gate` exists: a test holds
    every group running across an event (a scheduler restart, a worker killed) and then lets them
    finish, so the event certainly lands mid-group."""

    def gated_evaluate(model, revision, configs, eval_spec, should_stop, cache=None):
        import os
        import time

        for result in evaluate(model, revision, configs, eval_spec, should_stop, cache):
            yield result
            while not os.path.exists(gate) and not should_stop():
                time.sleep(0.05)

    return gated_evaluate


def provenances(engine, sweep_id) -> list[dict]:
    """The provenance of every done run of a sweep."""
    from sqlalchemy import select

    from kbit.db import session_scope
    from kbit.db.models import Run

    with session_scope(engine) as s:
        return [p for p in s.scalars(select(Run.provenance).where(Run.sweep_id == sweep_id, Run.status == "done"))]

"""The Ray side of launching: one Ray task per group of runs, on a GPU when the cluster has them.

Tasks run with `max_retries=0`: when a worker or node dies, Ray must not silently rerun the
task; the scheduler puts the runs back through the database instead, so the attempt and its
error are recorded and the retry is bounded by the run's max_attempts.
"""

from __future__ import annotations

import ray

from kbit.service.grouprun import Evaluate, noop_evaluate, run_group


EVALUATORS = ("workers", "noop")


def check_evaluator(name_or_fn) -> None:
    """Fail at once on an unknown evaluator name, without importing the workers (torch) here."""
    if not callable(name_or_fn) and name_or_fn not in EVALUATORS:
        raise ValueError(f"unknown evaluator {name_or_fn!r}; use {' or '.join(map(repr, EVALUATORS))} or a callable")


def resolve_evaluator(name_or_fn) -> Evaluate:
    """'workers' (kbit.workers.evaluate_group) | 'noop' (no work: the scheduler benchmark) | a callable."""
    check_evaluator(name_or_fn)
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn == "workers":
        from kbit.workers import evaluate_group

        return evaluate_group
    return noop_evaluate


@ray.remote(max_retries=0)
def run_group_task(db_url, worker, runs, evaluate, lease_seconds, env):
    return run_group(db_url, worker, runs, evaluate=resolve_evaluator(evaluate), lease_seconds=lease_seconds, env=env)


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


class RayLauncher:
    """`kbit.service.Launcher` over Ray tasks."""

    def __init__(self, db_url: str, evaluate, lease_seconds: float, env: dict):
        check_evaluator(evaluate)  # an unknown name fails here, not in every task
        self.db_url, self.evaluate, self.lease_seconds, self.env = db_url, evaluate, lease_seconds, env

    def capacity(self) -> int:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        return gpus if gpus else max(1, int(resources.get("CPU", 1)))

    def launch(self, worker: str, runs: list[dict]):
        resources = {"num_gpus": 1, "num_cpus": 1} if cluster_gpus() else {"num_cpus": 1}
        return run_group_task.options(**resources).remote(
            self.db_url, worker, runs, self.evaluate, self.lease_seconds, self.env
        )

    def cancel(self, handle) -> None:
        # force: kill the worker process even mid-config (a hung evaluation never checks a flag)
        ray.cancel(handle, force=True)

    def wait(self, handles: list, timeout: float):
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=timeout)
        out = []
        for ref in ready:
            try:
                out.append((ref, ray.get(ref), None))
            except Exception as exc:  # RayTaskError, WorkerCrashedError, NodeDiedError, OwnerDiedError ...
                out.append((ref, None, exc))
        return out

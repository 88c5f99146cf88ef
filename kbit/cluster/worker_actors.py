"""Long-lived worker actors: one per GPU share (or CPU slot), each keeping its last models loaded.

A `WorkerActor` is detached and named `kbit-worker:<scheduler name>:<id>` in the kbit namespace,
so it outlives the scheduler that created it: a scheduler that crashes or restarts finds its
workers by name (`find_workers`), asks each what it is running (`state`), and waits on that
group (`join`) instead of losing it. The database stays the only memory of who holds which run
(the group's leases, renewed by `kbit.service.run_group` in the worker).

A worker runs one group at a time (`run`), in a thread of its own so that `state` and `join`
answer meanwhile; it hands its `ModelCache` to the evaluator, so the next group of a model it
holds loads nothing. A worker whose scheduler is gone for good (no actor of that name) and that
has been idle for KBIT_WORKER_IDLE_S gives its resources back by exiting.
"""

from __future__ import annotations

import os
import threading
import time

import ray

from kbit import settings
from kbit.db import connect
from kbit.service.grouprun import Evaluate, noop_evaluate, run_group
from kbit.workers.modelcache import ModelCache

CPU_CACHE_BYTES = 4 * 2**30  # models a CPU worker keeps loaded, unless KBIT_WORKER_CACHE_GB says otherwise
ORPHAN_CHECK_S = 5.0


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


def worker_prefix(scheduler_name: str) -> str:
    return f"{settings.WORKER_PREFIX}:{scheduler_name}:"


def held_model(key) -> tuple[str, str]:
    """(model, revision) of a cache key: a ModelSpec, or a tuple that starts with them."""
    if hasattr(key, "model"):
        return key.model, key.revision
    return str(key[0]), str(key[1])


@ray.remote(max_restarts=0, max_concurrency=8)
class WorkerActor:
    def __init__(self, name: str, scheduler_name: str, db_url: str, evaluate, lease_seconds: float,
                 env: dict | None, gpu_share: float, cache_bytes: int | None):
        if env:
            os.environ.update({k: v for k, v in env.items() if v is not None})
        self.name, self.scheduler_name, self.db_url = name, scheduler_name, db_url
        self.evaluate = resolve_evaluator(evaluate)
        self.lease_seconds = lease_seconds
        self.gpu_share = gpu_share
        self.gpu_ids = [str(i) for i in ray.get_gpu_ids()]
        self.device_bytes = self._device_bytes(evaluate)
        if cache_bytes is None:
            cache_bytes = int(gpu_share * self.device_bytes / 2) if gpu_share else CPU_CACHE_BYTES
        self.cache = self._new_cache(evaluate, cache_bytes)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.current: dict | None = None
        self.engine = None
        self.finished: dict[str, tuple[dict | None, BaseException | None]] = {}  # worker id -> outcome
        self.groups = 0
        self.idle_since = time.monotonic()
        self._changed = threading.Condition()
        threading.Thread(target=self._exit_when_orphaned, daemon=True, name="kbit-orphan-check").start()

    # -- what the scheduler calls -------------------------------------------------------------

    def state(self) -> dict:
        current = self.current
        return {
            "name": self.name, "node_id": self.node_id, "pid": os.getpid(), "gpu_ids": self.gpu_ids,
            "gpu_share": self.gpu_share, "device_bytes": self.device_bytes, "busy": current is not None,
            "worker": current and current["worker"], "run_ids": current["run_ids"] if current else [],
            "model": current and current["model"], "loaded": [list(held_model(k)) for k in self.cache.held()],
            "cache_bytes": self.cache.budget_bytes, "held_bytes": self.cache.held_bytes(),
            "groups": self.groups, **self.cache.stats,
        }

    def run(self, worker: str, runs: list[dict]) -> dict:
        """Evaluate one claimed group (kbit.service.run_group); the summary says what stays loaded."""
        with self._changed:
            if self.current is not None:
                raise RuntimeError(f"worker {self.name} is busy with {self.current['worker']}; one group at a time")
            self.current = {"worker": worker, "run_ids": [r["run_id"] for r in runs], "model": runs[0]["model"]}
        summary, error = None, None
        try:
            summary = run_group(self.db_url, worker, runs, self.evaluate, lease_seconds=self.lease_seconds,
                                cache=self.cache, engine=self._engine())
            summary["loaded"] = [list(held_model(k)) for k in self.cache.held()]
            return summary
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._changed:
                self.finished[worker] = (summary, error)
                if len(self.finished) > 64:
                    self.finished.pop(next(iter(self.finished)))
                self.current = None
                self.groups += 1
                self.idle_since = time.monotonic()
                self._changed.notify_all()

    def join(self, worker: str) -> dict:
        """The outcome of group `worker` once it ends (a restarted scheduler waits on it here)."""
        with self._changed:
            while self.current is not None and self.current["worker"] == worker:
                self._changed.wait(1.0)
            summary, error = self.finished.get(worker, ({"unfinished": [], "loaded": []}, None))
        if error is not None:
            raise error
        return summary

    # -- inside ---------------------------------------------------------------------------------

    def _engine(self):
        """One database engine for the worker's life (a connection pool, not a connection per group)."""
        if self.engine is None:
            # One connection: the heartbeat thread waits the few ms the group's writes hold it.
            self.engine = connect(self.db_url, upgrade=False, pool_size=1)
        return self.engine

    def _device_bytes(self, evaluate) -> int:
        """Memory of this worker's GPU: measured when it has a real one, else KBIT_GPU_MEMORY_GB
        (fake GPUs of a test cluster, or an evaluator that never touches torch)."""
        if self.gpu_ids and evaluate == "workers":
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.get_device_properties(0).total_memory)
        return settings.gpu_memory_bytes()

    @staticmethod
    def _new_cache(evaluate, cache_bytes: int) -> ModelCache:
        if evaluate == "workers":
            from kbit.workers.run import new_model_cache

            return new_model_cache(cache_bytes)
        return ModelCache(cache_bytes)

    def _exit_when_orphaned(self) -> None:
        idle_s = settings.worker_idle_seconds()
        while True:
            time.sleep(ORPHAN_CHECK_S)
            if self.current is not None or time.monotonic() - self.idle_since < idle_s:
                continue
            try:
                ray.get_actor(self.scheduler_name, namespace=settings.RAY_NAMESPACE)
            except ValueError:  # no scheduler of that name any more: nobody will give this worker work
                os._exit(0)
            except Exception:  # the GCS did not answer: ask again later
                continue


def find_workers(scheduler_name: str) -> list[tuple[str, object]]:
    """(name, actor handle) of every live worker actor of this scheduler."""
    prefix = worker_prefix(scheduler_name)
    found = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == settings.RAY_NAMESPACE and entry["name"].startswith(prefix):
            try:
                found.append((entry["name"], ray.get_actor(entry["name"], namespace=settings.RAY_NAMESPACE)))
            except ValueError:  # it died between the listing and now
                pass
    return found


def kill_workers(scheduler_name: str) -> int:
    """Stop every worker actor of this scheduler (a scheduler shut down for good); how many."""
    workers = find_workers(scheduler_name)
    for _, actor in workers:
        ray.kill(actor, no_restart=True)
    return len(workers)

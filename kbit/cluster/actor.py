"""The scheduler as a named, detached Ray actor: a thin shell around `kbit.service.Scheduler` and
`kbit.service.Operations`.

Named `settings.SCHEDULER_NAME` in namespace `settings.RAY_NAMESPACE` and detached, so it
outlives the client that created it; `get_or_create_scheduler` finds the running one or starts
it. Its loop runs in a thread of its own; the typed methods (`kbit.service.api.ServiceAPI`:
submit, progress, ...) run beside it (a threaded actor). A user error raised in a method reaches the caller as its own class through
Ray's exception propagation (see `kbit.cluster.client`).
"""

from __future__ import annotations

import logging
import os
import threading

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kbit import settings
from kbit.cluster.pool import WorkerPool
from kbit.db import connect, mask_url, resolve_url
from kbit.service import Operations, Scheduler


def scheduler_options(options: dict | None) -> dict:
    """Explicit options over the environment's (spec.settings)."""
    merged = {
        "lease_seconds": settings.lease_seconds(),
        "max_runs_per_group": settings.max_runs_per_group(),
        "group_seconds": settings.group_seconds(),
        "poll_s": settings.poll_seconds(),
        "team_quota": settings.team_max_running(),
    }
    merged.update(options or {})
    return merged


@ray.remote(num_cpus=0, max_concurrency=16, max_restarts=3)
class SchedulerActor:
    def __init__(self, db_url: str | None, evaluate, options: dict, env: dict | None,
                 name: str = settings.SCHEDULER_NAME):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if env:
            os.environ.update(env)
        self.db_url = resolve_url(db_url)
        self.ops = Operations(connect(self.db_url))
        options = scheduler_options(options)
        lease = float(options["lease_seconds"])
        self.pool = WorkerPool(self.db_url, evaluate, lease, settings.forwarded_env(), scheduler_name=name)
        self.core = Scheduler(
            self.ops.engine, self.pool, name=name, lease_seconds=lease,
            max_runs_per_group=int(options["max_runs_per_group"]), team_quota=options["team_quota"],
            group_seconds=float(options["group_seconds"]),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.core.run_forever, args=(self._stop, float(options["poll_s"])), daemon=True
        )
        self._thread.start()

    def ping(self) -> dict:
        return {"database": mask_url(self.db_url), "pid": os.getpid(), "lease_seconds": self.core.lease_seconds,
                "node_id": ray.get_runtime_context().get_node_id(), **self.core.info()}

    def submit(self, spec: dict, team: str, token: str, submitter: str | None = None) -> dict:
        reply = self.ops.submit(spec, team, token, submitter)
        self.core.wake()
        return reply

    def cancel(self, sweep_id: int, team: str, token: str) -> dict:
        return self.ops.cancel(sweep_id, team, token)

    def progress(self, sweep_id: int) -> dict:
        return self.ops.progress(sweep_id)

    def sweeps(self, team: str | None = None) -> list[dict]:
        return self.ops.sweeps(team)

    def results(self, sweep_id: int | None = None) -> list[dict]:
        return self.ops.results(sweep_id)

    def failures(self, sweep_id: int, limit: int = 20) -> list[dict]:
        return self.ops.failures(sweep_id, limit)

    def workers(self) -> list[dict]:
        """The worker actors: node, GPU share, state, current model and runs, loaded models."""
        return self.pool.describe()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def shutdown(self) -> int:
        """Stop the loop and every worker of this scheduler (before it is killed for good); how many."""
        self.stop()
        return self.pool.shutdown()


def get_or_create_scheduler(
    db_url: str | None = None,
    evaluate="workers",
    options: dict | None = None,
    env: dict | None = None,
    name: str = settings.SCHEDULER_NAME,
    timeout_s: float = 120.0,
):
    """The running scheduler actor, or a new one (placed on this driver's node: the head, when
    connected through the Ray client). Waits until it answers; returns (actor, ping info)."""
    strategy = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
    actor = SchedulerActor.options(
        name=name, namespace=settings.RAY_NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=strategy,
    ).remote(db_url, evaluate, options or {}, env, name)
    info = ray.get(actor.ping.remote(), timeout=timeout_s)
    return actor, info


def find_scheduler(name: str = settings.SCHEDULER_NAME):
    """The running scheduler actor, or None."""
    try:
        return ray.get_actor(name, namespace=settings.RAY_NAMESPACE)
    except ValueError:
        return None


def stop_scheduler(name: str = settings.SCHEDULER_NAME, timeout_s: float = 60.0) -> bool:
    """Stop the scheduler and its workers for good; False when there was none."""
    from kbit.cluster.worker_actors import kill_workers

    actor = find_scheduler(name)
    if actor is None:
        kill_workers(name)
        return False
    try:
        ray.get(actor.shutdown.remote(), timeout=timeout_s)
    except Exception:  # it is dying or hung: the kill below ends it either way
        pass
    ray.kill(actor, no_restart=True)
    kill_workers(name)
    return True

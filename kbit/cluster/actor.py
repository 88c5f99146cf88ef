"""The scheduler as a named, detached Ray actor: a thin shell around `scheduling.Scheduler` and
`service`'s operations.

Named "kbit-scheduler" in namespace "kbit" and detached, so it outlives the client that created
it; `get_or_create_scheduler` finds the running one or starts it. Its loop runs in a thread of
its own; the actor's methods (submit, progress, ...) run beside it (a threaded actor). Errors a
user caused come back as data ({"error": class name, "message": ...}) so the client can show
one clear line.
"""

from __future__ import annotations

import logging
import os
import threading

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kbit.cluster import service
from kbit.cluster.evaluators import resolve_evaluator
from kbit.cluster.raytasks import RayLauncher
from kbit.cluster.scheduling import Scheduler
from kbit.db import connect, mask_url, resolve_url
from kbit.db.errors import DatabaseError

NAMESPACE = "kbit"
SCHEDULER_NAME = "kbit-scheduler"
# What workers need to find the same models and caches as the service that started them.
FORWARDED_ENV = ("KBIT_HOME", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "KBIT_LEASE_SECONDS", "KBIT_MAX_RUNS_PER_TASK", "KBIT_POLL_SECONDS")


def scheduler_options(options: dict | None) -> dict:
    """Explicit options over $KBIT_LEASE_SECONDS, $KBIT_MAX_RUNS_PER_TASK, $KBIT_POLL_SECONDS, over defaults."""
    env = os.environ
    merged = {
        "lease_seconds": float(env.get("KBIT_LEASE_SECONDS", 120)),
        "max_runs_per_task": int(env.get("KBIT_MAX_RUNS_PER_TASK", 16)),
        "poll_s": float(env.get("KBIT_POLL_SECONDS", 0.5)),
    }
    merged.update(options or {})
    return merged


def service_env() -> dict:
    return {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}


@ray.remote(num_cpus=0, max_concurrency=16, max_restarts=3)
class SchedulerActor:
    def __init__(self, db_url: str | None, evaluate, options: dict, env: dict | None):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if env:
            os.environ.update(env)
        self.db_url = resolve_url(db_url)
        self.engine = connect(self.db_url)
        options = scheduler_options(options)
        lease = float(options["lease_seconds"])
        launcher = RayLauncher(self.db_url, resolve_evaluator(evaluate), lease, service_env())
        self.core = Scheduler(
            self.engine,
            launcher,
            lease_seconds=lease,
            max_runs_per_task=int(options["max_runs_per_task"]),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.core.run_forever, args=(self._stop, float(options["poll_s"])), daemon=True
        )
        self._thread.start()

    def ping(self) -> dict:
        return {"database": mask_url(self.db_url), "pid": os.getpid(), "lease_seconds": self.core.lease_seconds,
                "node_id": ray.get_runtime_context().get_node_id(), **self.core.info()}

    def call(self, operation: str, kwargs: dict):
        """Run one of service.OPERATIONS; user errors come back as {"error", "message"}."""
        if operation not in service.OPERATIONS:
            return {"error": "ValueError", "message": f"unknown operation {operation!r}"}
        try:
            value = service.OPERATIONS[operation](self.engine, **kwargs)
        except (DatabaseError, ValueError, KeyError) as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        if operation == "submit":
            self.core.wake()
        return {"ok": value}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def get_or_create_scheduler(
    db_url: str | None = None,
    evaluate="workers",
    options: dict | None = None,
    env: dict | None = None,
    name: str = SCHEDULER_NAME,
    timeout_s: float = 120.0,
):
    """The running scheduler actor, or a new one (placed on this driver's node: the head, when
    connected through the Ray client). Waits until it answers; returns (actor, ping info)."""
    strategy = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
    actor = SchedulerActor.options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, scheduling_strategy=strategy
    ).remote(db_url, evaluate, options or {}, env)
    info = ray.get(actor.ping.remote(), timeout=timeout_s)
    return actor, info


def find_scheduler(name: str = SCHEDULER_NAME):
    """The running scheduler actor, or None."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None

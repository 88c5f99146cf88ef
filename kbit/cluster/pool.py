"""The Ray side of launching: a pool of long-lived worker actors (`kbit.cluster.worker_actors`), sized and
placed by what each group needs.

`WorkerPool` is the scheduler's `Launcher`. A group goes to an idle worker (the scheduler claims
it preferring the models that worker holds loaded) or to a new worker started for it:
- on a CPU cluster, one worker per CPU;
- on a GPU cluster, one worker per GPU share. A group's memory need (declared `memory_gb`, or the
  peak measured on earlier runs of its model) picks the share: 1/8, 1/4, 1/2 or one GPU, or whole
  GPUs (`device_map`) when it needs more than one. Ray's fractional GPU accounting then never puts
  more on a GPU than fits; a need nobody stated takes a whole GPU.

A worker that dies is never restarted by Ray (`max_restarts=0`): its group's runs go back to the
queue through the database, so the attempt and its error are recorded. When the worker's node is
gone the attempt is not charged (`lost`). Idle workers give their share back after
KBIT_WORKER_IDLE_S, at once when a new worker waits for room.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

import ray

from kbit import settings
from kbit.cluster.worker_actors import WorkerActor, check_evaluator, find_workers, kill_workers, worker_prefix
from kbit.service.scheduler import Slot

SHARES = (0.125, 0.25, 0.5, 1.0)  # GPU fractions a worker may take: halvings pack without gaps
STATE_TIMEOUT_S = 30.0
RESOURCES_TTL_S = 0.5  # the cluster's resources, asked of the GCS at most this often
PENDING_BEFORE_REAP_S = 5.0  # a new worker that waits this long for room has idle workers stopped


def gpu_share(need_bytes: int | None, gpu_bytes: int) -> float:
    """GPUs a worker takes for a group needing `need_bytes`: the smallest of SHARES that holds it,
    or whole GPUs beyond one; a whole GPU when the need is unknown."""
    if not need_bytes:
        return 1.0
    ratio = need_bytes / gpu_bytes
    if ratio > 1:
        return float(math.ceil(ratio))
    return next(share for share in SHARES if ratio <= share)


@dataclass
class PooledWorker:
    name: str
    actor: object
    share: float  # GPUs (0: a CPU worker)
    started_at: float = field(default_factory=time.monotonic)
    pending: object | None = None  # the first state() call, until the actor answers it (placed)
    node_id: str | None = None
    busy: object | None = None  # the handle of the group it runs
    group: dict | None = None  # worker id, run ids and model of that group
    holds: list = field(default_factory=list)  # [(model, revision)] loaded
    groups: int = 0
    idle_since: float = field(default_factory=time.monotonic)


class WorkerPool:
    """`kbit.service.Launcher` over long-lived worker actors."""

    def __init__(self, db_url: str, evaluate, lease_seconds: float, env: dict, scheduler_name: str):
        check_evaluator(evaluate)  # an unknown name fails here, not in every worker
        self.db_url, self.evaluate, self.lease_seconds, self.env = db_url, evaluate, lease_seconds, env
        self.scheduler_name = scheduler_name
        self.gpu_bytes = settings.gpu_memory_bytes()
        self.workers: dict[str, PooledWorker] = {}
        self.by_handle: dict[object, PooledWorker] = {}
        self.stats = {"workers_started": 0, "workers_stopped": 0, "workers_lost": 0}
        self._tag = uuid.uuid4().hex[:6]
        self._serial = 0
        self._failed_on: dict[object, str | None] = {}  # handle of a failed group -> its worker's node
        self._resources_cache: tuple[float, tuple[dict, dict]] = (0.0, ({}, {}))

    # -- the Launcher protocol ----------------------------------------------------------------

    def capacity(self) -> int:
        resources = self._resources()[0]
        gpus = int(resources.get("GPU", 0))
        return gpus if gpus else max(1, int(resources.get("CPU", 1)))

    def free_slots(self) -> list[Slot]:
        """Idle workers (with what they hold), then room for new workers."""
        self._refresh()
        idle = [Slot(worker=w, holds=list(w.holds))
                for w in self.workers.values() if w.pending is None and w.busy is None]
        return idle + [Slot() for _ in range(self._room())]

    def launch(self, worker: str, runs: list[dict], slot: Slot | None = None, need_bytes: int | None = None):
        share = gpu_share(need_bytes, self.gpu_bytes) if self._gpus() else 0.0
        pooled = slot.worker if slot is not None and slot.worker is not None else None
        if pooled is None or pooled.busy is not None or pooled.name not in self.workers or pooled.share < share:
            pooled = self._start(share)
        handle = pooled.actor.run.remote(worker, runs)
        pooled.busy, pooled.group = handle, {"worker": worker, "run_ids": [r["run_id"] for r in runs],
                                             "model": runs[0]["model"]}
        self.by_handle[handle] = pooled
        return handle

    def wait(self, handles: list, timeout: float):
        # Back as soon as one group ends (not after `timeout`), with every other that has ended too.
        ready, rest = ray.wait(handles, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        out = []
        for ref in ready:
            pooled = self.by_handle.pop(ref, None)
            try:
                summary = ray.get(ref)
                out.append((ref, summary, None))
                if pooled is not None:
                    pooled.holds = [tuple(m) for m in summary.get("loaded", pooled.holds)]
            except Exception as exc:  # ActorDiedError, RayTaskError, ...
                out.append((ref, None, exc))
                self._failed_on[ref] = pooled.node_id if pooled is not None else None
                if pooled is not None and isinstance(exc, (ray.exceptions.ActorDiedError,
                                                           ray.exceptions.ActorUnavailableError)):
                    self._forget(pooled, lost=True)
            if pooled is not None:
                pooled.busy, pooled.group, pooled.idle_since = None, None, time.monotonic()
                pooled.groups += 1
        return out

    def cancel(self, handle) -> None:
        # Kill the worker even mid-config (a hung evaluation never checks a flag); its cached
        # models go with it. Its group's handle then fails, which `wait` reports.
        pooled = self.by_handle.get(handle)
        if pooled is not None:
            ray.kill(pooled.actor, no_restart=True)
            self._forget(pooled)

    def lost(self, handle, error: BaseException) -> bool:
        """Whether a group failed because its worker's node left the cluster (no fault of its runs)."""
        node = self._failed_on.pop(handle, None)
        if isinstance(error, ray.exceptions.NodeDiedError):
            return True
        return node is not None and not self._nodes()[0].get(node, False)

    def adopt(self) -> list[tuple[object, str, list[int], str]]:
        """The groups that workers of an earlier instance of this scheduler are running now:
        (handle to wait on, worker id, run ids, model). Their idle workers join the pool too."""

        found = find_workers(self.scheduler_name)
        calls = {name: actor.state.remote() for name, actor in found}
        adopted = []
        for name, actor in found:
            try:
                state = ray.get(calls[name], timeout=STATE_TIMEOUT_S)
            except Exception:  # dead or unreachable: leave it; its runs' leases run out
                continue
            pooled = PooledWorker(name, actor, float(state["gpu_share"]), node_id=state["node_id"],
                                  holds=[tuple(m) for m in state["loaded"]], groups=state["groups"])
            self.workers[name] = pooled
            if state["busy"]:
                handle = actor.join.remote(state["worker"])
                pooled.busy = handle
                pooled.group = {"worker": state["worker"], "run_ids": state["run_ids"], "model": state["model"]}
                self.by_handle[handle] = pooled
                adopted.append((handle, state["worker"], list(state["run_ids"]), state["model"]))
        return adopted

    # -- the pool -----------------------------------------------------------------------------

    def describe(self) -> list[dict]:
        """Every worker with its node, GPU share, state, current group, loaded models and load
        counts, as the workers themselves say it now (`kbit status`)."""
        alive, addresses = self._nodes()
        workers = sorted(self.workers.values(), key=lambda w: (w.node_id or "", w.name))
        calls = [w.actor.state.remote() for w in workers]
        rows = []
        for pooled, call in zip(workers, calls):
            try:
                state = ray.get(call, timeout=STATE_TIMEOUT_S)
            except Exception:  # starting (not placed yet) or gone: what the pool knows
                state = {"busy": pooled.busy is not None, "loaded": [list(m) for m in pooled.holds], "pid": None,
                         "node_id": pooled.node_id, "groups": pooled.groups, "loads": None, "hits": None}
            node = state["node_id"]
            rows.append({
                "name": pooled.name, "node_id": node, "node": addresses.get(node, "?"),
                "node_alive": alive.get(node, False) if node else None, "pid": state["pid"],
                "gpu_share": pooled.share, "state": "starting" if pooled.pending is not None and not node
                else "busy" if state["busy"] else "idle",
                "model": pooled.group["model"] if pooled.group else None,
                "run_ids": pooled.group["run_ids"] if pooled.group else [],
                "loaded": state["loaded"], "groups": state["groups"], "loads": state["loads"], "hits": state["hits"],
            })
        return rows

    def shutdown(self) -> int:
        """Stop every worker of this scheduler (it is being shut down for good)."""

        self.workers.clear()
        return kill_workers(self.scheduler_name)

    def _start(self, share: float) -> PooledWorker:

        self._serial += 1
        name = f"{worker_prefix(self.scheduler_name)}{self._tag}-{self._serial}"
        resources = {"num_gpus": share, "num_cpus": 0} if share else {"num_cpus": 1}
        actor = WorkerActor.options(name=name, namespace=settings.RAY_NAMESPACE, lifetime="detached",
                                    **resources).remote(
            name, self.scheduler_name, self.db_url, self.evaluate, self.lease_seconds, self.env, share,
            settings.worker_cache_bytes(),
        )
        pooled = PooledWorker(name, actor, share, pending=actor.state.remote())
        self.workers[name] = pooled
        self.stats["workers_started"] += 1
        return pooled

    def _refresh(self) -> None:
        """Note workers that have started (where they are, what they measured); stop idle ones."""
        pending = {w.pending: w for w in self.workers.values() if w.pending is not None}
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                pooled = pending[ref]
                pooled.pending = None
                try:
                    state = ray.get(ref)
                except Exception:  # it died starting up; a group it was given reports the error
                    self._forget(pooled, lost=True)
                    continue
                pooled.node_id = state["node_id"]
                if state["device_bytes"] and state["gpu_ids"]:
                    self.gpu_bytes = int(state["device_bytes"])
        now = time.monotonic()
        # A pending worker may just be starting (a process takes seconds, a minute on a busy node).
        # It waits for room when the pool asked for more than the cluster has (a group too big for
        # the idle worker it was offered). Shares split over GPUs badly are freed by the idle timeout.
        waiting = self._overcommitted() and any(
            w.pending is not None and now - w.started_at > PENDING_BEFORE_REAP_S for w in self.workers.values())
        idle_s = settings.worker_idle_seconds()
        for pooled in list(self.workers.values()):
            if pooled.pending is None and pooled.busy is None and (waiting or now - pooled.idle_since > idle_s):
                ray.kill(pooled.actor, no_restart=True)
                self._forget(pooled)

    def _forget(self, pooled: PooledWorker, lost: bool = False) -> None:
        if self.workers.pop(pooled.name, None) is not None:
            self.stats["workers_lost" if lost else "workers_stopped"] += 1

    def _overcommitted(self) -> bool:
        resources = self._resources()[0]
        if self._gpus():
            return sum(w.share for w in self.workers.values()) > resources.get("GPU", 0)
        return len(self.workers) > resources.get("CPU", 0)

    def _resources(self) -> tuple[dict, dict]:
        """(cluster resources, available resources), asked at most every RESOURCES_TTL_S: a round
        asks several times, and every ask is a call to the GCS."""
        at, both = self._resources_cache
        if time.monotonic() - at > RESOURCES_TTL_S:
            both = (ray.cluster_resources(), ray.available_resources())
            self._resources_cache = (time.monotonic(), both)
        return both

    def _room(self) -> int:
        """How many more workers fit now: free CPUs, or free whole GPUs (at least one while any share
        is free), by this pool's own count and by what Ray says is available."""
        resources, available = self._resources()
        if self._gpus():
            free = min(resources.get("GPU", 0) - sum(w.share for w in self.workers.values()),
                       available.get("GPU", 0) - sum(w.share for w in self.workers.values() if w.pending is not None))
            return int(free) if free >= 1 else int(free >= SHARES[0])
        free = min(resources.get("CPU", 0) - len(self.workers),
                   available.get("CPU", 0) - sum(1 for w in self.workers.values() if w.pending is not None))
        return max(0, int(free))

    def _gpus(self) -> bool:
        return self._resources()[0].get("GPU", 0) > 0

    @staticmethod
    def _nodes() -> tuple[dict, dict]:
        """({node id: alive}, {node id: address}), as Ray says now."""
        nodes = ray.nodes()
        return ({n["NodeID"]: bool(n["Alive"]) for n in nodes},
                {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in nodes})

"""The scheduler's logic, without Ray: claim queued runs group by group, launch one task per group
up to the cluster's capacity, and turn dead tasks into retried runs.

A `Launcher` does the launching (Ray tasks in `kbit.cluster.launcher`; anything with the same three
methods in tests). The database is the scheduler's only memory: every tick first returns runs
with expired leases to the queue, so a restarted scheduler picks up what a dead one left behind.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from kbit.db import queries, queue, session_scope
from kbit.spec.sweep import RUN_TIMEOUT_S

log = logging.getLogger("kbit.scheduler")
LIMITS_EVERY_S = 1.0  # how often time limits and orphaned tasks are looked for


class Launcher(Protocol):
    def capacity(self) -> int:
        """How many group tasks the cluster can run at once right now."""

    def launch(self, worker: str, runs: list[dict]):
        """Start a task that runs `kbit.service.run_group` on these runs; return a handle."""

    def wait(self, handles: list, timeout: float) -> list[tuple[object, dict | None, BaseException | None]]:
        """Finished tasks among `handles` (waiting at most `timeout` s): (handle, summary, error)."""

    def cancel(self, handle) -> None:
        """Stop a task now, even in the middle of a config (its process is killed)."""


@dataclass
class TaskInfo:
    worker: str
    run_ids: list[int]
    model: str
    launched_at: float = field(default_factory=time.monotonic)
    cancelled: str | None = None  # why this scheduler cancelled the task


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # Ray wraps a task's death in a long multi-line message; the cause is on its first lines.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


class Scheduler:
    """Fans queued runs out through a Launcher; call `tick()` in a loop (or `run_forever`)."""

    def __init__(
        self,
        engine,
        launcher: Launcher,
        *,
        name: str = "kbit-scheduler",
        lease_seconds: float = 120.0,
        max_runs_per_task: int = 16,
        team_quota: int | None = None,
    ):
        self.engine = engine
        self.launcher = launcher
        self.lease_seconds = lease_seconds
        self.max_runs_per_task = max_runs_per_task
        self.team_quota = team_quota
        self.instance = f"{name}-{uuid.uuid4().hex[:8]}"
        self.inflight: dict[object, TaskInfo] = {}
        self.stats = {"tasks_launched": 0, "runs_claimed": 0, "tasks_failed": 0, "tasks_cancelled": 0,
                      "runs_requeued": 0, "runs_timed_out": 0, "ticks": 0}
        self._limits_checked_at = 0.0
        self._serial = 0
        self._wake = threading.Event()
        self._renewed_at = time.monotonic()

    # -- one round ---------------------------------------------------------------------------

    def tick(self, wait_s: float = 0.0) -> None:
        self.stats["ticks"] += 1
        self.harvest(wait_s)
        self.enforce_limits()
        self.renew_leases()
        with session_scope(self.engine) as s:
            expired = queue.requeue_expired(s)
        if expired:
            log.warning("requeued %d runs whose lease expired: %s", len(expired), expired[:10])
            self.stats["runs_requeued"] += len(expired)
        self.fill()

    def harvest(self, wait_s: float) -> None:
        """Collect finished tasks; the unfinished runs of a dead task go back to the queue."""
        if not self.inflight:
            return
        for handle, summary, error in self.launcher.wait(list(self.inflight), wait_s):
            info = self.inflight.pop(handle)
            if error is not None:
                self.stats["tasks_cancelled" if info.cancelled else "tasks_failed"] += 1
                message = (f"worker task for {info.model} was stopped: {info.cancelled}" if info.cancelled
                           else f"worker task for {info.model} died: {first_line(error)}")
                log.warning("%s (runs %s)", message, info.run_ids[:10])
                # runs of a task this scheduler stopped did nothing wrong: their attempt does not count
                self._release(info.worker, info.run_ids, message, charge=info.cancelled is None)
            elif summary and summary.get("unfinished"):
                self._release(info.worker, summary["unfinished"], f"worker task for {info.model} returned no result")

    def enforce_limits(self) -> None:
        """Runs past their sweep's time limit fail with `timeout` and their task is stopped (it hangs
        in that run; its other runs go back to the queue); a task left holding no run (its runs
        cancelled) is stopped now rather than after its current config."""
        if not self.inflight:
            return
        now = time.monotonic()
        if now - self._limits_checked_at < LIMITS_EVERY_S:
            return
        self._limits_checked_at = now
        stop: dict[str, str] = {}  # worker -> why its task must stop now
        with session_scope(self.engine) as s:
            for run_id, worker, limit in queue.overdue_runs(s, default_timeout_s=RUN_TIMEOUT_S):
                queue.fail_run(s, run_id, error=f"the run took longer than its limit of {limit:.0f} s (run_timeout_s)",
                               worker=worker, retryable=False, error_type="timeout")
                self.stats["runs_timed_out"] += 1
                stop[worker] = f"run {run_id} timed out after {limit:.0f} s; its other runs go back to the queue"
                log.warning("run %s timed out after %.0f s", run_id, limit)
            held = queue.holders(s, [run_id for info in self.inflight.values() for run_id in info.run_ids])
        for handle, info in self.inflight.items():
            if info.cancelled is None and not any(held.get(run_id) == info.worker for run_id in info.run_ids):
                stop.setdefault(info.worker, "none of its runs is its own any more (cancelled, failed or timed out)")
            if info.cancelled is None and info.worker in stop:
                info.cancelled = stop[info.worker]
                self.launcher.cancel(handle)

    def renew_leases(self) -> None:
        """Keep the leases of tasks Ray still runs (or has not started yet) alive.

        A task heartbeats its runs itself once it runs, but a worker process can take longer to
        start than a lease lasts. Leases then only run out when this scheduler dies with its tasks,
        which is exactly when the runs must go back to the queue.
        """
        if not self.inflight or time.monotonic() - self._renewed_at < self.lease_seconds / 3:
            return
        with session_scope(self.engine) as s:
            for info in self.inflight.values():
                queue.heartbeat(s, info.run_ids, worker=info.worker, lease_seconds=self.lease_seconds)
        self._renewed_at = time.monotonic()

    def _release(self, worker: str, run_ids: list[int], error: str, charge: bool = True) -> None:
        # fail_run only touches runs this worker still holds: finished ones are left alone.
        with session_scope(self.engine) as s:
            for run_id in run_ids:
                status = queue.fail_run(s, run_id, error=error, worker=worker, retryable=True,
                                        error_type="worker_died" if charge else "stopped", charge=charge)
                if status == "queued":
                    self.stats["runs_requeued"] += 1

    def fill(self) -> None:
        """Launch group tasks until the cluster's capacity is used or the queue is empty."""
        slots = self.launcher.capacity()
        free = slots - len(self.inflight)
        if free <= 0:
            return
        limit = self.group_size(slots)
        while free > 0:
            self._serial += 1
            worker = f"{self.instance}/t{self._serial}"
            with session_scope(self.engine) as s:
                claimed = queue.claim_runs(s, worker=worker, limit=limit, lease_seconds=self.lease_seconds,
                                           team_quota=self.team_quota)
            if not claimed:
                return
            runs = [
                {"run_id": c.run_id, "sweep_id": c.sweep_id, "model": c.model, "revision": c.revision,
                 "config": c.config, "eval": c.eval, "attempt": c.attempt}
                for c in claimed
            ]
            try:
                handle = self.launcher.launch(worker, runs)
            except Exception as exc:
                self._release(worker, [r["run_id"] for r in runs], f"could not launch a worker task: {first_line(exc)}")
                raise
            self.inflight[handle] = TaskInfo(worker, [r["run_id"] for r in runs], claimed[0].model)
            self.stats["tasks_launched"] += 1
            self.stats["runs_claimed"] += len(runs)
            free -= 1

    def group_size(self, slots: int) -> int:
        """Runs per task: the queue split evenly over all the cluster's slots, capped at
        max_runs_per_task. Splitting over all slots, not just the free ones, keeps the tail short:
        the last model's runs go to two workers, not to the one slot that happened to be free."""
        with session_scope(self.engine) as s:
            queued = sum(sweep["queued"] for sweep in queries.list_sweeps(s))
        return max(1, min(self.max_runs_per_task, math.ceil(queued / max(slots, 1))))

    # -- the loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Start a round now (a sweep was just submitted)."""
        self._wake.set()

    def run_forever(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                # With tasks in flight, wait on them (they finish on their own clock); else on a wake-up.
                if self.inflight:
                    self.tick(wait_s=poll_s)
                else:
                    self.tick()
                    self._wake.wait(poll_s)
                self._wake.clear()
            except Exception:
                log.exception("scheduler round failed; retrying")
                stop.wait(min(5.0, poll_s * 4))

    def info(self) -> dict:
        return {
            "instance": self.instance,
            "inflight_tasks": len(self.inflight),
            "inflight_runs": sum(len(i.run_ids) for i in self.inflight.values()),
            "capacity": self.launcher.capacity(),
            **self.stats,
        }

"""The scheduler's logic, without Ray: claim queued runs group by group for each free worker slot
(preferring a model the worker holds loaded), launch them, and turn dead groups into retried runs.

A `Launcher` does the launching (long-lived Ray worker actors in `kbit.cluster.pool`; a thread
pool in tests). The database is the scheduler's only memory: on its first round a scheduler adopts
the groups its workers are still running from an earlier instance (`Launcher.adopt`) and puts the
other runs that instance leased back in the queue at no attempt's cost; every round returns runs
with expired leases to the queue.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.exc import DBAPIError

from kbit import settings
from kbit.db import queries, queue, session_scope, upkeep
from kbit.service.memoryneed import estimate_need_bytes
from kbit.sweeps.runspec import RunEval
from kbit.sweeps.sweep import RUN_TIMEOUT_S

log = logging.getLogger("kbit.scheduler")
LIMITS_EVERY_S = 1.0  # how often time limits and orphaned groups are looked for
LEARNED_TTL_S = 60.0  # how long a model's measured memory need is reused before asking again
LEARNED_MARGIN = 1.2  # a measured peak, plus room for a longer document than any seen so far
UNHELD_GRACE_S = 5.0  # a group holding no run is stopped after this long (see enforce_limits)
ANALYZE_EVERY_S = 60.0  # the runs table's statistics refreshed by the scheduler's vacuum (autovacuum off)
RECENT_MODEL_S = 600.0  # a model claimed this recently may still have queued runs (see fill)
SHORT_GROUP_FACTOR = 16  # a group of short runs holds up to this many times max_runs_per_group


@dataclass
class Slot:
    """Room for one group: an idle worker (the launcher's `worker` and the (model, revision) pairs
    it holds loaded) or, with worker None, a worker yet to start."""

    worker: object = None
    holds: list = field(default_factory=list)


class Launcher(Protocol):
    def capacity(self) -> int:
        """How many groups the cluster can run at once (whole GPUs or CPUs): sizes the groups."""

    def launch(self, worker: str, runs: list[dict], slot: Slot | None = None, need_bytes: int | None = None):
        """Run `kbit.service.run_group` on these runs, on `slot`'s worker when it is an idle one big
        enough for `need_bytes`, else on a new one; return a handle."""

    def wait(self, handles: list, timeout: float) -> list[tuple[object, dict | None, BaseException | None]]:
        """Finished groups among `handles` (waiting at most `timeout` s): (handle, summary, error)."""

    def cancel(self, handle) -> None:
        """Stop a group now, even in the middle of a config (its process is killed)."""

    # Optional (a launcher without them has capacity() anonymous slots, adopts nothing, loses no node):
    #   free_slots() -> list[Slot]: idle workers, then room for new ones
    #   adopt() -> [(handle, worker id, run ids, model)]: groups still running from an earlier scheduler
    #   lost(handle, error) -> bool: the group's node left the cluster (its runs are not charged)


@dataclass
class GroupInfo:
    worker: str
    run_ids: list[int]
    model: str
    launched_at: float = field(default_factory=time.monotonic)
    cancelled: str | None = None  # why this scheduler cancelled the group


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # Ray wraps a worker's death in a long multi-line message; the cause is on its first lines.
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
        lease_seconds: float = settings.LEASE_SECONDS,
        max_runs_per_group: int = settings.MAX_RUNS_PER_GROUP,
        team_quota: int | None = None,
        group_seconds: float = 0.0,
        vacuum_every_s: float | None = None,
    ):
        self.engine = engine
        self.launcher = launcher
        self.lease_seconds = lease_seconds
        self.max_runs_per_group = max_runs_per_group
        self.team_quota = team_quota
        self.group_seconds = group_seconds
        self.instance = f"{name}-{uuid.uuid4().hex[:8]}"
        self.inflight: dict[object, GroupInfo] = {}
        self.stats = {"groups_launched": 0, "runs_claimed": 0, "groups_failed": 0, "groups_cancelled": 0,
                      "runs_requeued": 0, "runs_timed_out": 0, "ticks": 0, "groups_adopted": 0,
                      "runs_released_on_restart": 0, "runs_lost_with_node": 0, "vacuums": 0}
        self.name = name
        self._limits_checked_at = 0.0
        self._adopted = False
        self._unheld_since: dict[str, float] = {}  # group -> when it was first seen holding no run
        self._claimed_models: dict[str, float] = {}  # model -> when a group of it was last claimed
        self._learned: dict[tuple[str, str], tuple[float, int | None]] = {}
        self._run_seconds: dict[str, float] = {}  # model -> seconds per run in its recent groups (see runs_per_group)
        self._estimated: dict[tuple, tuple[float, int | None]] = {}
        self._serial = 0
        self._wake = threading.Event()
        self._renewed_at = time.monotonic()
        self.database_warning = upkeep.upkeep_warning(engine)
        if self.database_warning:
            log.warning(self.database_warning)
        # Postgres with autovacuum off: the runs table vacuumed from here (None: KBIT_VACUUM_S; 0: never).
        every = settings.vacuum_seconds() if vacuum_every_s is None else vacuum_every_s
        self._vacuum_every_s = every if self.database_warning else 0.0
        self._vacuumed_at = time.monotonic()
        self._analyzed_at = -math.inf
        self.vacuuming: threading.Thread | None = None  # the runs table's latest vacuum (vacuum_if_due)

    # -- one round ---------------------------------------------------------------------------

    def tick(self, wait_s: float = 0.0) -> None:
        self.stats["ticks"] += 1
        if not self._adopted:
            self.adopt()
        self.harvest(wait_s)
        self.enforce_limits()
        self.renew_leases()
        with session_scope(self.engine) as s:
            expired = queue.requeue_expired(s)
        if expired:
            log.warning("requeued %d runs whose lease expired: %s", len(expired), expired[:10])
            self.stats["runs_requeued"] += len(expired)
        self.vacuum_if_due()
        self.fill()

    def vacuum_if_due(self) -> None:
        """Start a VACUUM of the runs table every `vacuum_every_s` while the server's autovacuum is
        off (its claims would otherwise walk every dead row version the queue leaves), on a thread
        of its own: at 1M runs one takes 0.1-0.3 s, and ANALYZE (once a minute) 0.5 s more, that
        the scheduler's rounds do not wait for."""
        if not self._vacuum_every_s or time.monotonic() - self._vacuumed_at < self._vacuum_every_s:
            return
        if self.vacuuming is not None and self.vacuuming.is_alive():
            return
        self.vacuuming = threading.Thread(target=self._vacuum, name="kbit-vacuum", daemon=True)
        self.vacuuming.start()

    def _vacuum(self) -> None:
        analyze = time.monotonic() - self._analyzed_at >= ANALYZE_EVERY_S
        try:
            upkeep.vacuum_runs(self.engine, analyze=analyze)
            self.stats["vacuums"] += 1
            if analyze:
                self._analyzed_at = time.monotonic()
        except DBAPIError as exc:  # the database away for a moment: tried again at the next interval
            log.warning("vacuuming the runs table failed (%s); trying again in %.0f s",
                        str(exc.orig or exc).strip().splitlines()[0], self._vacuum_every_s)
        finally:
            self._vacuumed_at = time.monotonic()

    def adopt(self) -> None:
        """Take over the groups an earlier instance of this scheduler left running on its workers;
        the other runs it had leased (claimed, not yet started by a worker) go back to the queue
        uncharged. Nothing is stopped and no attempt is counted."""
        adopted = getattr(self.launcher, "adopt", list)()
        for handle, worker, run_ids, model in adopted:
            self.inflight[handle] = GroupInfo(worker, list(run_ids), model)
        held = {run_id for _, _, run_ids, _ in adopted for run_id in run_ids}
        with session_scope(self.engine) as s:
            leases = queue.leases_of(s, f"{self.name}-")
        orphans: dict[str, list[int]] = {}
        for run_id, owner in leases.items():
            instance = owner.split("/")[0]
            if instance != self.instance and instance.rsplit("-", 1)[0] == self.name and run_id not in held:
                orphans.setdefault(owner, []).append(run_id)
        for owner, run_ids in orphans.items():
            self._release(owner, run_ids, "the scheduler restarted before a worker started these runs", charge=False)
            self.stats["runs_released_on_restart"] += len(run_ids)
        self.stats["groups_adopted"] += len(adopted)
        if adopted or orphans:
            log.warning("adopted %d running groups (%d runs); requeued %d runs nobody had started",
                        len(adopted), len(held), sum(map(len, orphans.values())))
        self._adopted = True

    def harvest(self, wait_s: float) -> None:
        """Collect finished groups; the unfinished runs of a dead group go back to the queue."""
        if not self.inflight:
            return
        for handle, summary, error in self.launcher.wait(list(self.inflight), wait_s):
            info = self.inflight.pop(handle)
            if error is not None:
                lost = info.cancelled is None and getattr(self.launcher, "lost", lambda h, e: False)(handle, error)
                self.stats["groups_cancelled" if info.cancelled else "groups_failed"] += 1
                if info.cancelled:
                    message, error_type = f"group of {info.model} was stopped: {info.cancelled}", "stopped"
                elif lost:
                    message, error_type = f"the node of the worker for {info.model} left the cluster", "node_lost"
                else:
                    message, error_type = f"group of {info.model} died: {first_line(error)}", "worker_died"
                log.warning("%s (runs %s)", message, info.run_ids[:10])
                # Runs of a group this scheduler stopped, or whose node went away, did nothing wrong:
                # their attempt does not count.
                released = self._release(info.worker, info.run_ids, message, charge=error_type == "worker_died",
                                         error_type=error_type)
                if lost:
                    self.stats["runs_lost_with_node"] += released
            elif summary:
                if summary.get("unfinished"):
                    self._release(info.worker, summary["unfinished"], f"group of {info.model} returned no result")
                self._measure(info.model, summary, len(info.run_ids))

    def enforce_limits(self) -> None:
        """Runs past their sweep's time limit fail with `timeout` and their group is stopped (it hangs
        in that run; its other runs go back to the queue); a group left holding no run (its runs
        cancelled) is stopped rather than after its current config. A group is only taken for one
        holding nothing after UNHELD_GRACE_S of it: a group that has just stored its last result
        ends on its own (and one whose runs were cancelled stops before its next config), while
        stopping it kills a worker with its loaded models."""
        if not self.inflight:
            return
        now = time.monotonic()
        if now - self._limits_checked_at < LIMITS_EVERY_S:
            return
        self._limits_checked_at = now
        stop: dict[str, str] = {}  # worker -> why its group must stop now
        with session_scope(self.engine) as s:
            for run_id, worker, limit in queue.overdue_runs(s, default_timeout_s=RUN_TIMEOUT_S):
                queue.fail_run(s, run_id, error=f"the run took longer than its limit of {limit:.0f} s (run_timeout_s)",
                               worker=worker, retryable=False, error_type="timeout")
                self.stats["runs_timed_out"] += 1
                stop[worker] = f"run {run_id} timed out after {limit:.0f} s; its other runs go back to the queue"
                log.warning("run %s timed out after %.0f s", run_id, limit)
            held = queue.holders(s, [run_id for info in self.inflight.values() for run_id in info.run_ids])
        unheld = {info.worker for info in self.inflight.values()
                  if not any(held.get(run_id) == info.worker for run_id in info.run_ids)}
        self._unheld_since = {worker: self._unheld_since.get(worker, now) for worker in unheld}
        for handle, info in self.inflight.items():
            if info.cancelled is None and now - self._unheld_since.get(info.worker, now) >= UNHELD_GRACE_S:
                stop.setdefault(info.worker, "none of its runs is its own any more (cancelled, failed or timed out)")
            if info.cancelled is None and info.worker in stop:
                info.cancelled = stop[info.worker]
                self.launcher.cancel(handle)

    def renew_leases(self) -> None:
        """Keep the leases of groups the workers still run (or has not started yet) alive.

        A group heartbeats its runs itself once it runs, but a worker process can take longer to
        start than a lease lasts. Leases then only run out when this scheduler dies with its groups,
        which is exactly when the runs must go back to the queue.
        """
        if not self.inflight or time.monotonic() - self._renewed_at < self.lease_seconds / 3:
            return
        with session_scope(self.engine) as s:  # one statement for every group (1,000 groups: one, not 1,000)
            queue.renew_leases(s, [run_id for info in self.inflight.values() for run_id in info.run_ids],
                               [info.worker for info in self.inflight.values()], lease_seconds=self.lease_seconds)
        self._renewed_at = time.monotonic()

    def _release(self, worker: str, run_ids: list[int], error: str, charge: bool = True,
                 error_type: str | None = None) -> int:
        """Put the runs `worker` still holds back in the queue (fail_run leaves finished ones
        alone); how many went back."""
        requeued = 0
        with session_scope(self.engine) as s:
            for run_id in run_ids:
                status = queue.fail_run(s, run_id, error=error, worker=worker, retryable=True,
                                        error_type=error_type or ("worker_died" if charge else "stopped"), charge=charge)
                requeued += status == "queued"
        self.stats["runs_requeued"] += requeued
        return requeued

    def free_slots(self) -> list[Slot]:
        if hasattr(self.launcher, "free_slots"):
            return self.launcher.free_slots()
        return [Slot() for _ in range(self.launcher.capacity() - len(self.inflight))]

    def fill(self) -> None:
        """Give every free slot a group (an idle worker first one of a model it holds) until the
        slots or the queue run out."""
        slots = self.free_slots()
        if not slots:
            return
        split = self.group_size(self.launcher.capacity())
        # How many workers run or hold each model: a worker without one of its own goes where fewest
        # are. Holds count only for models claimed lately: a model long finished has no runs to share.
        now = time.monotonic()
        self._claimed_models = {m: at for m, at in self._claimed_models.items() if now - at < RECENT_MODEL_S}
        workers_on = Counter(info.model for info in self.inflight.values())
        for slot in slots:
            workers_on.update({model for model, _ in slot.holds if model in self._claimed_models})
        for slot in slots:
            self._serial += 1
            worker = f"{self.instance}/t{self._serial}"
            own = {model for model, _ in slot.holds if model in self._claimed_models}
            others = {model: n - (model in own) for model, n in workers_on.items() if n - (model in own) > 0}
            with session_scope(self.engine) as s:
                claimed = queue.claim_runs(s, worker=worker, limit=lambda model, _: self.group_limit(model, split),
                                           lease_seconds=self.lease_seconds,
                                           team_quota=self.team_quota, prefer=slot.holds, avoid=others)
            if not claimed:
                return
            runs = [
                {"run_id": c.run_id, "sweep_id": c.sweep_id, "model": c.model, "revision": c.revision,
                 "config": c.config, "eval": c.eval, "attempt": c.attempt}
                for c in claimed
            ]
            try:
                handle = self.launcher.launch(worker, runs, slot=slot, need_bytes=self.memory_need(claimed))
            except Exception as exc:
                self._release(worker, [r["run_id"] for r in runs], f"could not launch a group: {first_line(exc)}")
                raise
            self.inflight[handle] = GroupInfo(worker, [r["run_id"] for r in runs], claimed[0].model)
            if claimed[0].model not in own:
                workers_on[claimed[0].model] += 1
            self._claimed_models[claimed[0].model] = now
            self.stats["groups_launched"] += 1
            self.stats["runs_claimed"] += len(runs)

    def group_size(self, slots: int) -> int:
        """Runs per group at most: the queue split evenly over all the cluster's slots, capped at the
        largest group any model gets (`runs_per_group`). Splitting over all slots, not just the free
        ones, keeps the tail short: the last model's runs go to two workers, not to the one slot
        that happened to be free."""
        cap = max([self.max_runs_per_group, *map(self.runs_per_group, self._run_seconds)])
        with session_scope(self.engine) as s:
            queued = queue.count_queued(s, at_most=cap * max(slots, 1))
        return max(1, min(cap, math.ceil(queued / max(slots, 1))))

    def group_limit(self, model: str, split: int) -> int:
        """Runs the next group of `model` takes: the queue's even split over the slots (`group_size`),
        at most `runs_per_group(model)`. A group of runs measured short is not cut below half of
        that: the tail a smaller one would save is under group_seconds / 2, and each extra group
        of a model costs a claim, a launch and, on a worker that lacks the model, a model load."""
        per_group = self.runs_per_group(model)
        if per_group > self.max_runs_per_group:
            return max(min(split, per_group), per_group // 2)
        return min(split, per_group)

    def runs_per_group(self, model: str) -> int:
        """max_runs_per_group, or for a model whose runs were measured short (a group of them takes
        less than group_seconds) as many as fill about group_seconds, up to SHORT_GROUP_FACTOR times
        as many: every group costs a claim, a launch and a round of the scheduler (~0.3 s on a
        loaded 2-core head), which runs of milliseconds would otherwise spend most of their time in."""
        per_run = self._run_seconds.get(model)
        if not self.group_seconds or per_run is None:
            return self.max_runs_per_group
        fitting = int(self.group_seconds / max(per_run, 1e-3))
        return max(self.max_runs_per_group, min(self.max_runs_per_group * SHORT_GROUP_FACTOR, fitting))

    def _measure(self, model: str, summary: dict, runs: int) -> None:
        """Seconds per run of a finished group (its model's load included, so a first group reads long),
        averaged with the model's earlier groups."""
        done = runs - len(summary.get("unfinished") or ())
        if done < 1 or "load_and_eval_s" not in summary:
            return
        seconds = summary["load_and_eval_s"] / done
        earlier = self._run_seconds.get(model)
        self._run_seconds[model] = seconds if earlier is None else (earlier + seconds) / 2

    def memory_need(self, group: list[queue.ClaimedRun]) -> int | None:
        """Bytes one worker needs for this group: the larger of the peak measured on earlier runs
        of its model (with a margin) and what the sweep declared (`memory_gb`); with neither, an
        estimate from the checkpoint on this machine (kbit.service.memoryneed); else None."""
        run = group[0]
        key = (run.model, run.revision)
        at, learned = self._learned.get(key, (0.0, None))
        if time.monotonic() - at > LEARNED_TTL_S:
            with session_scope(self.engine) as s:
                learned = queries.learned_memory_bytes(s, run.model, run.revision)
            self._learned[key] = (time.monotonic(), learned)
        # The larger of the two: a measured peak counts only the first GPU of a model spread over several.
        evaluation = RunEval.from_dict(run.eval)
        needs = [n for n in (int(learned * LEARNED_MARGIN) if learned else None, evaluation.memory_bytes) if n]
        if needs:
            return max(needs)
        # The group's largest k below 16 needs the most: its packed copy sits beside the original weights.
        quantized = [int(r.config.get("bits", 16)) for r in group if int(r.config.get("bits", 16)) < 16]
        shape = (run.model, run.revision, max(quantized, default=16),
                 evaluation.eval.batch_size, evaluation.load.get("dtype", "auto"))
        at, estimate = self._estimated.get(shape, (0.0, None))
        if time.monotonic() - at > LEARNED_TTL_S:  # file lookups: once a minute per group shape
            estimate = estimate_need_bytes(*shape)
            self._estimated[shape] = (time.monotonic(), estimate)
        return estimate

    # -- the loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Start a round now (a sweep was just submitted)."""
        self._wake.set()

    def run_forever(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                # With groups in flight, wait on them (they finish on their own clock); else on a wake-up.
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
            "database_warning": self.database_warning,
            **self.stats,
            **getattr(self.launcher, "stats", {}),
        }

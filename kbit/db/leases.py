"""The lease life cycle of a run: claim, heartbeat, fail (retry or give up), requeue expired leases.

Claims on Postgres lock rows with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on
each other or claim a run twice. SQLite has no such clause (SQLAlchemy leaves it out there); its
transactions begin with `BEGIN IMMEDIATE` (see engine.py), so one writer claims at a time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kbit.db.errors import NotFound
from kbit.db.models import Run
from kbit.db.util import now_value


@dataclass(frozen=True)
class ClaimedRun:
    """One run handed to a worker; `attempt` counts from 1."""

    run_id: int
    sweep_id: int
    model: str
    revision: str
    config: dict
    eval: dict
    attempt: int


def _head_of_queue(session: Session):
    """The highest-priority, oldest queued run nobody holds a lock on (None when there is none)."""
    top = select(func.max(Run.priority)).where(Run.status == "queued").scalar_subquery()
    base = select(Run.id, Run.model, Run.revision, Run.eval_hash).where(Run.status == "queued")
    # Two tries keep both index-friendly: within the top priority by age, then the general order
    # (only needed when every top-priority run is locked by another claimer right now).
    for query in (
        base.where(Run.priority == top).order_by(Run.id),
        base.order_by(Run.priority.desc(), Run.id),
    ):
        head = session.execute(query.limit(1).with_for_update(skip_locked=True)).first()
        if head is not None:
            return head
    return None


def claim_runs(session: Session, *, worker: str, limit: int = 16, lease_seconds: float = 120) -> list[ClaimedRun]:
    """Lease up to `limit` queued runs to `worker`, all of one (model, revision, eval) group.

    The group is that of the highest-priority, oldest queued run; within it runs go by priority
    then age. Each claimed run becomes `running` with attempts + 1 and a lease of `lease_seconds`
    that `heartbeat` renews; `requeue_expired` returns it to the queue if the lease runs out.
    """
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"claim_runs: limit must be an int >= 1, got {limit!r}")
    if not lease_seconds or lease_seconds <= 0:
        raise ValueError(f"claim_runs: lease_seconds must be > 0, got {lease_seconds!r}")
    head = _head_of_queue(session)
    if head is None:
        return []
    group = (
        select(Run.id)
        .where(
            Run.status == "queued", Run.model == head.model, Run.revision == head.revision,
            Run.eval_hash == head.eval_hash,
        )
        .order_by(Run.priority.desc(), Run.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(group))
    now = now_value(session)
    claimed = session.execute(
        update(Run)
        .where(Run.id.in_(ids), Run.status == "queued")
        .values(
            status="running", attempts=Run.attempts + 1, lease_owner=worker, worker=worker,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds), started_at=now,
        )
        .returning(Run.id, Run.sweep_id, Run.model, Run.revision, Run.config, Run.eval, Run.attempts, Run.priority)
    ).all()
    claimed.sort(key=lambda r: (-r.priority, r.id))
    return [ClaimedRun(r.id, r.sweep_id, r.model, r.revision, r.config, r.eval, r.attempts) for r in claimed]


def heartbeat(session: Session, run_ids: list[int], *, worker: str, lease_seconds: float = 120) -> list[int]:
    """Renew `worker`'s leases on `run_ids`; return the ids it still holds.

    A run that was cancelled, finished, or re-leased to another worker is not in the answer: the
    worker should stop before starting it.
    """
    if not run_ids:
        return []
    now = now_value(session)
    held = session.scalars(
        update(Run)
        .where(Run.id.in_(list(run_ids)), Run.status == "running", Run.lease_owner == worker)
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
        .returning(Run.id)
    ).all()
    return sorted(held)


def locked_run(session: Session, run_id: int):
    row = session.execute(
        select(Run.id, Run.status, Run.cache_key, Run.attempts, Run.max_attempts, Run.lease_owner, Run.error)
        .where(Run.id == run_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist; check the run id")
    return row


def fail_run(
    session: Session, run_id: int, *, error: str, worker: str, retryable: bool = True, error_type: str | None = None
) -> str:
    """Record a failed attempt by the worker holding the run; return the run's new status.

    Retryable failures go back to the queue until attempts reach max_attempts, then the run is
    `failed` with this (the last) error. A report from a worker that no longer holds the run
    changes nothing.
    """
    run = locked_run(session, run_id)
    if run.status != "running" or run.lease_owner != worker:
        return run.status
    again = retryable and run.attempts < run.max_attempts
    now = now_value(session)
    session.execute(
        update(Run).where(Run.id == run_id).values(
            status="queued" if again else "failed", error=error, error_type=error_type, lease_owner=None,
            lease_expires_at=None, finished_at=None if again else now,
        )
    )
    return "queued" if again else "failed"


def requeue_expired(session: Session, now: dt.datetime | None = None) -> list[int]:
    """Return runs whose lease ran out to the queue; return their ids.

    The attempt that lost its lease counts: a run already at max_attempts becomes `failed`, with
    the lease error and the previous attempt's error in its error text.
    """
    now = now or now_value(session)
    expired = session.execute(
        select(Run.id, Run.attempts, Run.max_attempts, Run.lease_owner, Run.error)
        .where(Run.status == "running", Run.lease_expires_at < now)
        .order_by(Run.id)
        .with_for_update(skip_locked=True)
    ).all()
    for run in expired:
        lost = (
            f"worker {run.lease_owner} stopped renewing its lease during attempt {run.attempts} of "
            f"{run.max_attempts} (it died or lost its connection)"
        )
        again = run.attempts < run.max_attempts
        error = lost if again or not run.error else f"{lost}; previous error: {run.error}"
        session.execute(
            update(Run).where(Run.id == run.id).values(
                status="queued" if again else "failed", error=error, error_type="lease_expired",
                lease_owner=None, lease_expires_at=None, finished_at=None if again else now,
            )
        )
    return [run.id for run in expired]

"""Sweep-level operations: cancel (only by the owning team) and progress counts."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kbit.db.errors import NotFound, PermissionDenied
from kbit.db.models import RUN_STATES, Run, Sweep, Team
from kbit.db.util import now_value

IN_FLIGHT = ("queued", "running")


def _sweep_with_team(session: Session, sweep_id: int):
    row = session.execute(
        select(Sweep.id, Sweep.status, Team.name.label("team")).join(Team).where(Sweep.id == sweep_id)
    ).first()
    if row is None:
        raise NotFound(f"sweep {sweep_id} does not exist; `kbit status` lists the sweeps")
    return row


def cancel_sweep(session: Session, sweep_id: int, *, team: str) -> dict:
    """Cancel a sweep of `team`: queued runs are cancelled, running ones drop out of their worker's
    heartbeat so it stops before the next config. Returns the sweep's progress afterwards.

    PermissionDenied when the sweep belongs to another team; NotFound when there is no such sweep.
    """
    sweep = _sweep_with_team(session, sweep_id)
    if sweep.team != team:
        raise PermissionDenied(
            f"sweep {sweep_id} belongs to team {sweep.team!r}, not {team!r}; only its own team can cancel it"
        )
    now = now_value(session)
    session.execute(
        update(Run)
        .where(Run.sweep_id == sweep_id, Run.status.in_(IN_FLIGHT))
        .values(status="cancelled", lease_owner=None, lease_expires_at=None, finished_at=now)
    )
    if sweep.status != "cancelled":
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(status="cancelled", cancelled_at=now))
    return sweep_progress(session, sweep_id)


def sweep_progress(session: Session, sweep_id: int) -> dict:
    """Run counts by status, the total, and eta_s (remaining runs at this sweep's pace so far;
    None before the first run finishes, 0.0 when nothing is left)."""
    _sweep_with_team(session, sweep_id)
    counts = dict.fromkeys(RUN_STATES, 0)
    for status, n in session.execute(
        select(Run.status, func.count()).where(Run.sweep_id == sweep_id).group_by(Run.status)
    ):
        counts[status] = n
    counts["total"] = sum(counts[s] for s in RUN_STATES)
    remaining = counts["queued"] + counts["running"]
    eta = 0.0 if remaining == 0 else None
    if remaining and counts["done"]:
        first, last = session.execute(
            select(func.min(Run.started_at), func.max(Run.finished_at)).where(
                Run.sweep_id == sweep_id, Run.status == "done"
            )
        ).one()
        if first and last and last > first:
            eta = remaining * (last - first).total_seconds() / counts["done"]
    counts["eta_s"] = eta
    return counts

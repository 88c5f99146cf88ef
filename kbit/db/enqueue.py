"""enqueue_sweep: a sweep and its runs in one transaction, idempotently; cache hits become `cached`."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kbit import settings
from kbit.db.clock import db_now
from kbit.db.models import Run, Sweep
from kbit.db.newruns import canonical_json, run_problems, run_row, sha256_hex
from kbit.db.teams import get_team

CHUNK = 2000  # keys per IN (...) list: well under SQLite's bound-parameter limit


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _done_runs_by_cache_key(session: Session, keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(keys))):
        rows = session.execute(select(Run.cache_key, Run.id).where(Run.status == "done", Run.cache_key.in_(chunk)))
        found.update({key: run_id for key, run_id in rows})
    return found


def enqueue_sweep(
    session: Session,
    *,
    team: str,
    name: str,
    spec: dict,
    runs: list[dict],
    priority: int = 0,
    submitter: str | None = None,
    code_version: str | None = None,
    max_attempts: int = settings.MAX_ATTEMPTS,
) -> int:
    """Write a sweep and its runs; return the sweep id.

    Idempotent: the same (team, name, spec) while that sweep is active returns its id and writes
    nothing. A run whose cache_key already has a done result is stored as `cached`, pointing at
    that run. Everything is checked before anything is written (ValueError listing every problem).
    """
    problems = [p for i, run in enumerate(runs) for p in run_problems(i, run)]
    if not isinstance(name, str) or not name.strip():
        problems.insert(0, f"sweep name must be a non-empty string, got {name!r}")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        problems.insert(0, f"max_attempts must be an int >= 1, got {max_attempts!r}")
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.insert(0, f"priority must be an int, got {priority!r}")
    if problems:
        raise ValueError("cannot enqueue the sweep:\n  " + "\n  ".join(problems))
    team_row = get_team(session, team)
    spec_hash = sha256_hex(canonical_json(spec))
    active = select(Sweep.id).where(
        Sweep.team_id == team_row.id, Sweep.name == name, Sweep.spec_hash == spec_hash, Sweep.status == "active"
    )
    existing = session.scalar(active)
    if existing is not None:
        return existing

    now = db_now(session)
    try:
        with session.begin_nested():
            sweep_id = session.execute(
                insert(Sweep)
                .values(
                    team_id=team_row.id, name=name, spec=spec, spec_hash=spec_hash, status="active",
                    priority=priority, submitter=submitter, code_version=code_version, created_at=now,
                )
                .returning(Sweep.id)
            ).scalar_one()
    except IntegrityError:
        # Another submitter wrote the same sweep between our check and insert (Postgres only).
        return session.scalar(active)

    cached_from = _done_runs_by_cache_key(session, [run["cache_key"] for run in runs])
    rows = []
    for run in runs:
        row = run_row(run)
        source = cached_from.get(row["cache_key"])
        row.update(
            sweep_id=sweep_id, team_id=team_row.id, priority=priority, attempts=0, max_attempts=max_attempts, created_at=now,
            status="cached" if source else "queued", cached_from_id=source, finished_at=now if source else None,
        )
        rows.append(row)
    for chunk in _chunks(rows):
        session.execute(insert(Run), chunk)
    return sweep_id

"""The service's operations as plain functions over a database engine.

The scheduler actor exposes exactly these (a client on a Ray cluster calls them remotely); the
CLI calls them directly when it has the database itself (embedded mode). Submitting checks the
team's token and writes the sweep and all its runs in one transaction, or nothing.
"""

from __future__ import annotations

from kbit.cluster.runs import expand_runs
from kbit.cluster.sweep import Sweep
from kbit.db import queries, queue, session_scope, teams
from kbit.version import code_version


def submit(engine, spec: dict, team: str, token: str, submitter: str | None = None) -> dict:
    """Verify the token, expand the sweep into runs, enqueue them; return the sweep id and counts.

    Submitting the same sweep (team, name and spec) again while it is active returns the same id
    and writes nothing; runs whose result already exists (any team) are stored as cached.
    """
    sweep = Sweep.from_spec(spec)
    code = code_version()
    runs = expand_runs(sweep, code)
    with session_scope(engine) as s:
        teams.verify_token(s, team, token)
        sweep_id = queue.enqueue_sweep(
            s,
            team=team,
            name=sweep.name,
            spec=sweep.spec(),
            runs=runs,
            priority=sweep.priority,
            submitter=submitter,
            code_version=code,
            max_attempts=sweep.max_attempts,
        )
        counts = queue.sweep_progress(s, sweep_id)
    return {"sweep_id": sweep_id, "name": sweep.name, "team": team, **counts}


def cancel(engine, sweep_id: int, team: str, token: str) -> dict:
    with session_scope(engine) as s:
        teams.verify_token(s, team, token)
        return queue.cancel_sweep(s, sweep_id, team=team)


def progress(engine, sweep_id: int) -> dict:
    with session_scope(engine) as s:
        return queue.sweep_progress(s, sweep_id)


def sweeps(engine, team: str | None = None) -> list[dict]:
    with session_scope(engine) as s:
        return queries.list_sweeps(s, team=team)


def results(engine, sweep_id: int | None = None) -> list[dict]:
    with session_scope(engine) as s:
        return queries.results_rows(s, sweep_id=sweep_id)


def failures(engine, sweep_id: int, limit: int = 20) -> list[dict]:
    """The failed runs of a sweep with their errors (for status and the summary table)."""
    rows = [r for r in results(engine, sweep_id) if r["status"] == "failed"]
    keep = ("run_id", "model", "label", "attempts", "error_type", "error")
    return [{k: r.get(k) for k in keep} for r in rows[:limit]]


OPERATIONS = {
    "submit": submit,
    "cancel": cancel,
    "progress": progress,
    "sweeps": sweeps,
    "results": results,
    "failures": failures,
}

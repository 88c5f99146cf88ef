"""The service's operations, typed, over one database: `Operations`, the implementation of
`kbit.service.api.ServiceAPI` that the others call.

The scheduler actor exposes exactly these methods on a Ray cluster (`kbit.cluster.client.RayService`
has the same ones, remotely), the gateway as HTTP routes (`kbit.service.gateway`, its client
`HttpService`); `tests/service/test_service_api.py` checks all of them against `ServiceAPI`. The
CLI uses an `Operations` of its own when it can open the database itself. Submitting rebuilds the `Sweep` from its plain spec (the same validation as
`kbit submit --check`), checks the team's token, and writes the sweep and all its runs in one
transaction, or nothing. User errors are `kbit.errors` classes.
"""

from __future__ import annotations

from kbit.db import connect, queries, queue, session_scope, teams
from kbit.sweeps.expand import expand_runs
from kbit.sweeps.sweep import Sweep
from kbit.version import code_version

FAILURE_FIELDS = ("run_id", "model", "label", "attempts", "error_type", "error")


class Operations:
    """submit, cancel, progress, sweeps, results, failures (`ServiceAPI`) on one database engine."""

    mode = "local"

    def __init__(self, engine):
        self.engine = engine

    @classmethod
    def open(cls, db_url: str | None = None) -> "Operations":
        """On the database at `db_url` (default: KBIT_DATABASE_URL, else SQLite under KBIT_HOME),
        its schema upgraded first: these operations write."""
        return cls(connect(db_url))

    def submit(self, spec: dict, team: str, token: str, submitter: str | None = None) -> dict:
        """Verify the token, expand the sweep into runs, enqueue them; return the sweep id and counts.

        Submitting the same sweep (team, name and spec) again while it is active returns the same id
        and writes nothing; runs whose result already exists (any team) are stored as cached.
        """
        sweep = Sweep.from_spec(spec)
        runs = expand_runs(sweep)  # their cache keys hold the numerics version; the sweep, the code version
        with session_scope(self.engine) as s:
            teams.verify_token(s, team, token)
            teams.check_priority(s, team, sweep.priority)
            sweep_id = queue.enqueue_sweep(
                s, team=team, name=sweep.name, spec=sweep.spec(), runs=runs, priority=sweep.priority,
                submitter=submitter, code_version=code_version(), max_attempts=sweep.max_attempts,
            )
            counts = queue.sweep_progress(s, sweep_id)
        return {"sweep_id": sweep_id, "name": sweep.name, "team": team, **counts}

    def cancel(self, sweep_id: int, team: str, token: str) -> dict:
        with session_scope(self.engine) as s:
            teams.verify_token(s, team, token)
            return queue.cancel_sweep(s, sweep_id, team=team)

    def progress(self, sweep_id: int) -> dict:
        with session_scope(self.engine) as s:
            return queue.sweep_progress(s, sweep_id)

    def sweeps(self, team: str | None = None) -> list[dict]:
        with session_scope(self.engine) as s:
            return queries.list_sweeps(s, team=team)

    def results(self, sweep_id: int | None = None) -> list[dict]:
        with session_scope(self.engine) as s:
            if sweep_id is not None:
                queue.sweep_progress(s, sweep_id)  # NotFound for an unknown sweep, not an empty table
            return queries.results_rows(s, sweep_id=sweep_id)

    def failures(self, sweep_id: int, limit: int = 20) -> list[dict]:
        """The failed runs of a sweep with their errors (for status and the summary table)."""
        rows = [r for r in self.results(sweep_id) if r["status"] == "failed"]
        return [{k: r.get(k) for k in FAILURE_FIELDS} for r in rows[:limit]]

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

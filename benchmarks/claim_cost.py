"""What one claim costs on Postgres as the queue grows: `queue.claim_runs` plain (the head of the
queue by priority, team fairness and age), with affinity (`prefer`: a model the worker holds) and
with spreading (`avoid`: models other workers hold), each timed over up to 20 claims of 16 runs in a fresh database.

    .venv/bin/python -m benchmarks.claim_cost --runs 1000 10000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

One sweep of R runs over 8 models per case, in a fresh database (dropped after), analyzed first so
the planner sees the real row counts. Above `--submitted` runs (10,000), the sweep submits that
many and its queued runs are copied in SQL up to R (a 1M-run sweep through `submit` takes long
and its JSON and validation are not what is measured); `--kinds plain` measures one kind only.
`--leases N` also times the lease checks the scheduler makes every round with N runs running:

    .venv/bin/python -m benchmarks.claim_cost --runs 100000 1000000 --leases 16000 --kinds \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import time
import uuid
from contextlib import contextmanager

from sqlalchemy import text

from benchmarks.scale import make_sweep
from tests.support.postgres import fresh_postgres


def claim_ms(engine, repeat: int = 20, **options) -> float:
    from kbit.db import queue, session_scope

    started = time.perf_counter()
    for _ in range(repeat):
        with session_scope(engine) as s:
            assert queue.claim_runs(s, worker=f"w-{uuid.uuid4().hex[:8]}", limit=16, **options)
    return (time.perf_counter() - started) / repeat * 1000


MODELS = [f"scalec/m{i}" for i in range(8)]
KINDS = {
    "plain": {},
    "prefer the last model": {"prefer": [(MODELS[-1], "main")]},
    "avoid all but the last": {"avoid": {m: 1 for m in MODELS[:-1]}},
    "spread (fewest holders)": {"avoid": {**{m: 3 for m in MODELS[:-1]}, MODELS[-1]: 1}},
}


def copy_queued(conn, copies: int) -> None:
    """Each queued run `copies` more times (new ids, later in the queue)."""
    from kbit.db.models import Run

    columns = ", ".join(column.name for column in Run.__table__.columns if column.name != "id")
    conn.execute(text(
        f"INSERT INTO runs ({columns}) SELECT {columns} FROM runs, generate_series(1, :copies) "
        "WHERE status = 'queued' ORDER BY generate_series, id"
    ), {"copies": copies})


@contextmanager
def queue_of(url: str, runs: int, submitted: int, running: int = 0):
    """An engine on a fresh database (dropped after) holding one sweep of `runs` runs, the first
    `running` of them leased in groups of 16 to one scheduler's workers and started an hour ago."""
    from kbit.db import connect, session_scope, teams
    from kbit.service import Operations

    base = min(runs, submitted)
    if runs % base:
        raise SystemExit(f"--runs {runs} must be a multiple of --submitted {submitted}")
    with fresh_postgres(url, prefix="kbit_claims") as fresh:
        engine = connect(fresh)
        with session_scope(engine) as s:
            token = teams.create_team(s, "t")
        Operations(engine).submit(make_sweep(base, 8, "c").spec(), "t", token)
        with engine.connect() as conn:
            if runs > base:
                copy_queued(conn, runs // base - 1)
            conn.execute(text(
                "UPDATE runs SET status = 'running', attempts = 1, lease_owner = 'sched-1/t' || (id / 16), "
                "worker = 'sched-1/t' || (id / 16), lease_expires_at = now() + interval '1 hour', "
                "started_at = now() - interval '1 hour' WHERE id <= :running"
            ), {"running": running})
            conn.execute(text("ANALYZE"))
            conn.commit()
        try:
            yield engine
        finally:
            engine.dispose()


def measure(url: str, runs: int, options: dict, submitted: int) -> float:
    """ms per claim, in a fresh database holding one sweep of `runs` runs."""
    with queue_of(url, runs, submitted) as engine:
        return claim_ms(engine, repeat=min(20, runs // 8 // 16), **options)


def lease_checks(url: str, runs: int, running: int, submitted: int, repeat: int = 5) -> dict[str, float]:
    """ms per call of each lease check the scheduler makes every round, with `running` runs leased
    (in groups of 16) among `runs`: `holders` of every in-flight id, `heartbeat` of every group
    (renew_leases), `overdue_runs` and `requeue_expired` (none overdue or expired)."""
    from kbit.db import queue, session_scope

    ids = list(range(1, running + 1))
    groups: dict[str, list[int]] = {}
    for run_id in ids:
        groups.setdefault(f"sched-1/t{run_id // 16}", []).append(run_id)
    checks = {
        f"holders ({running:,} ids)": lambda s: queue.holders(s, ids),
        f"heartbeat, {len(groups):,} groups": lambda s: [queue.heartbeat(s, g, worker=w, lease_seconds=3600) for w, g in groups.items()],
        f"renew_leases, {len(groups):,} groups in one statement": lambda s: queue.renew_leases(s, ids, list(groups), lease_seconds=3600),
        "overdue_runs": lambda s: queue.overdue_runs(s, default_timeout_s=3 * 3600),
        "requeue_expired": lambda s: queue.requeue_expired(s),
    }
    out = {}
    with queue_of(url, runs, submitted, running) as engine:
        for name, check in checks.items():
            started = time.perf_counter()
            for _ in range(repeat):
                with session_scope(engine) as s:
                    check(s)
            out[name] = (time.perf_counter() - started) / repeat * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--database-url", required=True, help="a Postgres server URL")
    parser.add_argument("--submitted", type=int, default=10_000, help="runs submitted; more are copies in SQL")
    parser.add_argument("--kinds", nargs="*", choices=list(KINDS), default=list(KINDS), metavar="KIND",
                        help=f"which claims to time (default all: {', '.join(KINDS)}; none: only --leases)")
    parser.add_argument("--leases", type=int, default=0, metavar="N",
                        help="also time the scheduler's lease checks with N runs running, among each --runs")
    args = parser.parse_args()
    if args.leases:
        table = {runs: lease_checks(args.database_url, runs, args.leases, args.submitted) for runs in args.runs}
        print("| lease check | " + " | ".join(f"{runs:,} runs" for runs in args.runs) + " |")
        print("|---|" + "---:|" * len(args.runs))
        for name in table[args.runs[0]]:
            print(f"| {name} | " + " | ".join(f"{table[runs][name]:.1f} ms" for runs in args.runs) + " |", flush=True)
        if not args.kinds:
            return
    print("| claim (16 runs) | " + " | ".join(f"{runs:,} queued" for runs in args.runs) + " |")
    print("|---|" + "---:|" * len(args.runs))
    for kind in args.kinds:
        cells = [f"{measure(args.database_url, runs, KINDS[kind], args.submitted):.1f} ms" for runs in args.runs]
        print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

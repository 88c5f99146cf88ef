"""What one claim costs on Postgres as the queue grows: `queue.claim_runs` plain (the head of the
queue by priority, team fairness and age), with affinity (`prefer`: a model the worker holds) and
with spreading (`avoid`: models other workers hold), each timed over up to 20 claims of 16 runs in a fresh database.

    .venv/bin/python -m benchmarks.claim_cost --runs 1000 10000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

One sweep of R runs over 8 models per case, in a fresh database (dropped after), analyzed first so
the planner sees the real row counts. Above `--submitted` runs (10,000), the sweep submits that
many and its queued runs are copied in SQL up to R (a 1M-run sweep through `submit` takes long
and its JSON and validation are not what is measured); `--kinds plain` measures one kind only.
"""

from __future__ import annotations

import argparse
import time
import uuid

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


def measure(url: str, runs: int, options: dict, submitted: int) -> float:
    """ms per claim, in a fresh database holding one sweep of `runs` runs."""
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
            conn.execute(text("ANALYZE"))
            conn.commit()
        try:
            return claim_ms(engine, repeat=min(20, runs // 8 // 16), **options)
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--database-url", required=True, help="a Postgres server URL")
    parser.add_argument("--submitted", type=int, default=10_000, help="runs submitted; more are copies in SQL")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS), metavar="KIND",
                        help=f"which claims to time (default all: {', '.join(KINDS)})")
    args = parser.parse_args()
    print("| claim (16 runs) | " + " | ".join(f"{runs:,} queued" for runs in args.runs) + " |")
    print("|---|" + "---:|" * len(args.runs))
    for kind in args.kinds:
        cells = [f"{measure(args.database_url, runs, KINDS[kind], args.submitted):.1f} ms" for runs in args.runs]
        print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""What a worker spends on the database per run: one group of no-op runs through `run_group`
(kbit's no-op evaluator, so only the worker's own bookkeeping is left: each run's start, its
result, lease renewals), in this process, on a fresh Postgres database (dropped after).

    .venv/bin/python -m benchmarks.group_writes --runs 256 --repeat 5 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Prints, per repeat and as a median: CPU and wall milliseconds per run in this process, and SQL
statements per run. The group's results are written `--batch` per transaction (16, the worker's
default; 1 is one transaction per result).
"""

from __future__ import annotations

import argparse
import statistics
import time

from sqlalchemy import event

from benchmarks.scale import make_sweep
from tests.support.postgres import fresh_postgres


def one_group(engine, runs: int, batch: int, tag: str) -> dict[str, float]:
    """Submit `runs` no-op runs of one model, claim them as one group, run it; figures per run."""
    from kbit.db import queue, session_scope, teams
    from kbit.service import Operations
    from kbit.service.grouprun import noop_evaluate, run_group

    with session_scope(engine) as s:
        token = teams.create_team(s, f"t{tag}")
    Operations(engine).submit(make_sweep(runs, 1, tag).spec(), f"t{tag}", token)
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="bench-worker", limit=runs)
    assert len(claimed) == runs, (len(claimed), runs)
    group = [{"run_id": r.run_id, "model": r.model, "revision": r.revision, "config": r.config, "eval": r.eval}
             for r in claimed]
    sent = []

    def count(*_):
        sent.append(1)

    event.listen(engine, "before_cursor_execute", count)
    cpu, wall = time.process_time(), time.perf_counter()
    counts = run_group("", "bench-worker", group, noop_evaluate, engine=engine, batch=batch)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    event.remove(engine, "before_cursor_execute", count)
    assert counts["stored"] == runs, counts
    return {"cpu_ms": cpu / runs * 1000, "wall_ms": wall / runs * 1000, "statements": len(sent) / runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a Postgres server URL")
    parser.add_argument("--runs", type=int, default=256, help="runs in the group")
    parser.add_argument("--batch", type=int, default=16, help="results per transaction")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from kbit.db import connect

    with fresh_postgres(args.database_url, prefix="kbit_writes") as url:
        engine = connect(url)
        try:
            one_group(engine, 32, args.batch, "warm")  # imports, the first connection, statement caches
            figures = [one_group(engine, args.runs, args.batch, str(i)) for i in range(args.repeat)]
        finally:
            engine.dispose()
    print(f"run_group, {args.runs} no-op runs, results {args.batch} per transaction, Postgres")
    print("| repeat | CPU ms/run | wall ms/run | statements/run |\n|---|---:|---:|---:|")
    for i, f in enumerate(figures, 1):
        print(f"| {i} | {f['cpu_ms']:.2f} | {f['wall_ms']:.2f} | {f['statements']:.2f} |")
    median = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
    print(f"| median | {median['cpu_ms']:.2f} | {median['wall_ms']:.2f} | {median['statements']:.2f} |")


if __name__ == "__main__":
    main()

"""Benchmark of the store: claim / complete throughput and dashboard query times on 100k runs,
SQLite and PostgreSQL side by side.

    python -m benchmarks.db [--runs 100000] [--queue 4000] [--postgres URL] [--out benchmarks/db.md]

Postgres comes from --postgres, else $KBIT_TEST_POSTGRES_URL, else scripts/ensure_postgres.sh;
the benchmark makes its own database there (kbit_bench_<random>) and drops it afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import insert, text, update
from tqdm import tqdm

from benchmarks.timing import timed
from kbit.db import connect, queries, queue, session_scope, teams
from kbit.db.models import Result, Run, RunBits
from tests.support.postgres import fresh_postgres, postgres_server

CONFIGS = [
    {"bits": b, "dtype": d, "blocksize": bs, "exponent_bits": (3 if b >= 4 else 2) if d == "fp" else None,
     "outlier_fraction": 0.0}
    for b in (3, 4, 5, 6, 8) for d in ("int", "fp", "nf", "quantile", "dynamic") for bs in (64, 128, 256, 1024)
]  # 100 configs per model
EVAL = {"tasks": ["kbit_lastword", "kbit_choice"], "num_fewshot": 0}
RESULT_METRICS = (("kbit_lastword", "acc"), ("kbit_choice", "acc"), ("mean_zero_shot", "acc"))


def runs_for(n: int, tag: str) -> list[dict]:
    return [
        {"model": f"family{i // 1000 % 10}/m{i // len(CONFIGS)}", "revision": "main",
         "family": f"family{i // 1000 % 10}", "config": CONFIGS[i % len(CONFIGS)], "eval": EVAL,
         "cache_key": f"{tag}-{i}"}
        for i in range(n)
    ]


def fake_result(run_id: int, config: dict) -> dict:
    bpp = config["bits"] + 16 / config["blocksize"]
    value = (run_id % 997) / 997
    return {
        "config": config, "status": "done", "error_type": None, "error": None,
        "metrics": [{"task": t, "metric": m, "value": value, "stderr": 0.01} for t, m in RESULT_METRICS],
        "bits": {"n_params": 10**8, "n_quantized": 9 * 10**7, "bits_per_param": bpp, "total_bits": 9e7 * bpp + 1.6e8},
        "wall_time_s": 1.0, "peak_memory_bytes": 1, "device": "bench", "provenance": {"bench": True},
    }


def worker_loop(url: str, worker: str, limit: int) -> tuple[int, float, float]:
    """Claim and complete until the queue is empty; return (runs, seconds claiming, seconds completing)."""
    engine = connect(url, upgrade=False)
    n, t_claim, t_complete = 0, 0.0, 0.0
    while True:
        start = time.perf_counter()
        with session_scope(engine) as s:
            batch = queue.claim_runs(s, worker=worker, limit=limit)
        t_claim += time.perf_counter() - start
        if not batch:
            break
        start = time.perf_counter()
        for r in batch:  # one transaction per result, as a worker writes them as they come
            with session_scope(engine) as s:
                queue.complete_run(s, r.run_id, fake_result(r.run_id, r.config), worker=worker)
        t_complete += time.perf_counter() - start
        n += len(batch)
    engine.dispose()
    return n, t_claim, t_complete


def bench_queue(url: str, n_runs: int, workers: int) -> dict:
    engine = connect(url)
    with session_scope(engine) as s:
        teams.create_team(s, f"q{workers}")
        queue.enqueue_sweep(s, team=f"q{workers}", name="queue-bench", spec={"w": workers},
                            runs=runs_for(n_runs, f"q{workers}"))
    engine.dispose()
    start = time.perf_counter()
    if workers == 1:
        results = [worker_loop(url, "w0", 16)]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.starmap(worker_loop, [(url, f"w{i}", 16) for i in range(workers)])
    wall = time.perf_counter() - start
    n = sum(r[0] for r in results)
    assert n == n_runs, f"claimed {n} of {n_runs} runs"
    return {
        "claim": n / sum(r[1] for r in results) * workers,
        "complete": n / sum(r[2] for r in results) * workers,
        "end_to_end": n / wall,
    }


def populate(engine, n_runs: int, chunk: int = 5000) -> None:
    """n_runs finished runs over 100 sweeps of two teams: 80% done with results, 20% cached."""
    with session_scope(engine) as s:
        for team in ("nlp", "vision"):
            teams.create_team(s, team)
    per_sweep = max(1, n_runs // 100)
    with tqdm(total=n_runs, desc="populate", unit="run", leave=False) as bar:
        for k in range(0, n_runs, per_sweep):
            count = min(per_sweep, n_runs - k)
            with session_scope(engine) as s:
                sweep = queue.enqueue_sweep(s, team=("nlp", "vision")[k // per_sweep % 2], name=f"s{k}", spec={"k": k},
                                            runs=runs_for(count, f"p{k}"))
                ids = list(s.scalars(text("SELECT id FROM runs WHERE sweep_id = :s ORDER BY id"), {"s": sweep}))
                n_done = int(len(ids) * 0.8)
                done, cached = ids[:n_done], ids[n_done:]
                for lo in range(0, len(done), chunk):
                    part = done[lo : lo + chunk]
                    s.execute(update(Run).where(Run.id.in_(part)).values(status="done"))
                    s.execute(insert(Result), [
                        {"run_id": i, "task": t, "metric": m, "value": (i % 997) / 997, "stderr": 0.01}
                        for i in part for t, m in RESULT_METRICS
                    ])
                    s.execute(insert(RunBits), [
                        {"run_id": i, "n_params": 10**8, "n_quantized": 9 * 10**7, "bits_per_param": 4.25,
                         "total_bits": 4e8} for i in part
                    ])
                for j, i in enumerate(cached):
                    s.execute(update(Run).where(Run.id == i).values(status="cached", cached_from_id=done[j % len(done)]))
            if k // per_sweep % 20 == 0:  # keep the planner's statistics current while the table grows
                with engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE")
            bar.update(count)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def bench_queries(engine) -> dict:
    out = {}
    with session_scope(engine) as s:
        out["frontier_rows (all)"], rows = timed(lambda: queries.frontier_rows(s))
        out["rows"] = len(rows)
        out["frontier_rows (1 team, nf+fp, b64)"], _ = timed(
            lambda: queries.frontier_rows(s, teams=["nlp"], dtypes=["nf", "fp"], blocksizes=[64]))
        out["frontier_rows (1 sweep)"], _ = timed(lambda: queries.frontier_rows(s, sweeps=[50]))
        out["list_sweeps"], _ = timed(lambda: queries.list_sweeps(s))
        out["list_metrics"], _ = timed(lambda: queries.list_metrics(s))
        out["sweep_progress"], _ = timed(lambda: queue.sweep_progress(s, 50))
    return out


def run_backend(name: str, url_factory, n_runs: int, n_queue: int) -> dict:
    figures = {}
    with url_factory() as url:
        for workers in (1, 4):
            print(f"[{name}] queue: {n_queue} runs, {workers} worker process(es) ...", flush=True)
            q = bench_queue(url, n_queue, workers)
            figures[f"claim, {workers} worker(s) (runs/s)"] = q["claim"]
            figures[f"complete, {workers} worker(s) (runs/s)"] = q["complete"]
            figures[f"claim+complete end to end, {workers} worker(s) (runs/s)"] = q["end_to_end"]
    with url_factory() as url:
        print(f"[{name}] populating {n_runs} finished runs ...", flush=True)
        engine = connect(url)
        populate(engine, n_runs)
        q = bench_queries(engine)
        engine.dispose()
    figures["frontier rows returned"] = q.pop("rows")
    figures.update({f"{k} (ms)": v * 1000 for k, v in q.items()})
    return figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="finished runs for the query benchmark")
    parser.add_argument("--queue", type=int, default=4000, help="queued runs for the claim/complete benchmark")
    parser.add_argument("--postgres", help="server URL (default: $KBIT_TEST_POSTGRES_URL or ensure_postgres.sh)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)

    @contextmanager
    def sqlite_url():
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"

    server = postgres_server(args.postgres)
    sqlite = run_backend("sqlite", sqlite_url, args.runs, args.queue)
    postgres = run_backend("postgres", lambda: fresh_postgres(server, prefix="kbit_bench"), args.runs, args.queue)

    lines = [
        "# kbit.db benchmark",
        "",
        f"`python -m benchmarks.db --runs {args.runs} --queue {args.queue}` on this machine: "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, SQLite file (WAL) vs local PostgreSQL.",
        "Claim: `claim_runs(limit=16)`, one transaction per claim. Complete: `complete_run` of a 3-metric result, "
        "one transaction each. Query times: median of 5, on finished runs (80% done, 20% cached).",
        "",
        "| figure | SQLite | PostgreSQL |",
        "| --- | ---: | ---: |",
    ]
    for key in sqlite:
        a, b = sqlite[key], postgres[key]
        fmt = (lambda v: f"{v:,.0f}") if "runs/s" in key or "returned" in key else (lambda v: f"{v:,.1f}")
        lines.append(f"| {key} | {fmt(a)} | {fmt(b)} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()

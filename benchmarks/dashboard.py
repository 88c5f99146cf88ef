"""Benchmark of the Frontier page on a large database (100,000 finished runs by default).

    python -m benchmarks.dashboard [--runs 100000] [--database-url URL] [--repeat 3]

Without --database-url it fills a fresh SQLite file: 2 teams, 100 sweeps, 5 families x 20 model
sizes x 121 configs (k 3..8 x 5 data types x 4 block sizes, plus 16-bit), each config re-run in
several sweeps with scores that follow the paper's shape. Runs are written with enqueue_sweep,
then their results in bulk (complete_run one by one would take minutes). It then times the
Frontier page through Streamlit's AppTest, cold (caches cleared: query + aggregation + chart) and
warm (cached), and each step on its own, and prints the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select, update
from tqdm import tqdm

import kbit.dashboard
from benchmarks.timing import timed
from kbit.analysis import findings, frontier
from kbit.dashboard import charts, data
from kbit.db import connect, queue, session_scope, teams
from kbit.db.models import Result, Run, RunBits
from kbit.kernels.config import QuantConfig

APP = Path(kbit.dashboard.__file__).with_name("app.py")
FAMILIES = [f"family{i}" for i in range(5)]
SIZES = [int(10 ** (6 + 3 * i / 19)) for i in range(20)]  # 1M .. 1B parameters
DTYPES = ("int", "fp", "nf", "quantile", "dynamic")
CONFIGS = [
    {"bits": k, "dtype": d, "blocksize": b, "exponent_bits": (2 if k == 3 else 3) if d == "fp" else None,
     "outlier_fraction": 0.0}
    for k in range(3, 9) for d in DTYPES for b in (64, 128, 256, 1024)
] + [{"bits": 16, "dtype": "none", "blocksize": None, "exponent_bits": None, "outlier_fraction": 0.0}]
METRICS = (("mean_zero_shot", "acc"), ("kbit_lastword", "acc"), ("kbit_choice", "acc"))


def bits_of(n_params: int, cfg: dict) -> tuple[float, float]:
    bpp = cfg["bits"] + (16 / cfg["blocksize"] if cfg["blocksize"] else 0.0)
    return bpp, n_params * bpp


def score(n_params: int, cfg: dict, noise: float) -> float:
    """Accuracy rising with log size, falling steeply below 4 bits; int and big blocks a bit worse."""
    k = cfg["bits"]
    acc = 0.25 + 0.04 * math.log2(n_params / 1e6) - 0.12 * max(0, 4 - k) ** 1.5 - 0.004 * max(0, 6 - k)
    if k < 16:
        acc -= {"int": 0.02, "dynamic": 0.015, "fp": 0.004, "nf": 0.0, "quantile": 0.001}[cfg["dtype"]]
        acc -= 0.002 * math.log2(cfg["blocksize"] / 64)
    return acc + noise


def all_runs() -> list[dict]:
    return [
        {"model": f"{fam}/m{i}", "family": fam, "revision": "main", "config": cfg, "n_params": n}
        for fam in FAMILIES for i, n in enumerate(SIZES) for cfg in CONFIGS
    ]


def populate(url: str, n_runs: int, n_sweeps: int = 100) -> None:
    engine = connect(url)
    grid = all_runs()
    with session_scope(engine) as s:
        for team in ("nlp", "vision"):
            teams.create_team(s, team)
    per_sweep = math.ceil(n_runs / n_sweeps)
    with tqdm(total=n_runs, desc="populate", unit="run") as bar:
        for sweep in range(n_sweeps):
            count = min(per_sweep, n_runs - sweep * per_sweep)
            if count <= 0:
                break
            picked = [grid[(sweep * per_sweep + j) % len(grid)] for j in range(count)]
            runs = [{"model": r["model"], "revision": "main", "family": r["family"], "config": r["config"],
                     "label": QuantConfig.from_dict(r["config"]).label(),
                     "eval": {"tasks": ["kbit_lastword", "kbit_choice"], "seed": sweep}, "cache_key": f"{sweep}-{j}"}
                    for j, r in enumerate(picked)]
            with session_scope(engine) as s:
                sweep_id = queue.enqueue_sweep(s, team=("nlp", "vision")[sweep % 2], name=f"sweep{sweep}",
                                               spec={"i": sweep}, runs=runs)
                ids = list(s.scalars(select(Run.id).where(Run.sweep_id == sweep_id).order_by(Run.id)))
                s.execute(update(Run).where(Run.sweep_id == sweep_id).values(status="done", finished_at=func.now()))
                results, reports = [], []
                for run_id, r in zip(ids, picked):
                    noise = ((run_id * 2654435761) % 1000 - 500) / 1e5
                    value = score(r["n_params"], r["config"], noise)
                    results += [{"run_id": run_id, "task": t, "metric": m, "value": value + 0.01 * i, "stderr": 0.01}
                                for i, (t, m) in enumerate(METRICS)]
                    bpp, total = bits_of(r["n_params"], r["config"])
                    reports.append({"run_id": run_id, "n_params": r["n_params"], "n_quantized": r["n_params"],
                                    "bits_per_param": bpp, "total_bits": total})
                s.execute(insert(Result), results)
                s.execute(insert(RunBits), reports)
            bar.update(count)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def page_once(url: str, clear: bool) -> float:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if clear:
        st.cache_data.clear()
    os.environ["KBIT_DATABASE_URL"] = url
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["page"] = "frontier"
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception or not at.get("vega_lite_chart"):
        raise RuntimeError(f"the Frontier page did not render: {[e.message for e in at.exception]}")
    return elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="finished runs to write (default 100000)")
    parser.add_argument("--database-url", help="time an existing database instead of filling a new SQLite file")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure (median shown)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        if not args.database_url:
            populate(url, args.runs)
        page_once(url, clear=True)  # imports and the engine, so the figures below are steady state
        figures = {}
        figures["query: data.frontier (all runs)"], frame = timed(lambda: data.frontier(url, "mean_zero_shot", "acc"), args.repeat)
        figures["aggregate: chart_points + thin"], points = timed(
            lambda: frontier.thin(frontier.chart_points(frame, "bits", [], False), "bits", False), args.repeat)
        figures["analysis: findings (equal bits, 4,000 bootstrap replicates)"], _ = timed(
            lambda: findings(frame, "mean_zero_shot/acc"), args.repeat)
        figures["chart: scaling_chart(...).to_dict()"], _ = timed(
            lambda: charts.scaling_chart(points, y_title="acc").to_dict(), args.repeat)
        figures["Frontier page, cold (caches cleared)"], _ = timed(lambda: page_once(url, clear=True), args.repeat)
        figures["Frontier page, warm (cached)"], _ = timed(lambda: page_once(url, clear=False), args.repeat)
        with_facets = frontier.chart_points(frame, "bits", ["dtype", "block"], False)

    print(f"\nkbit dashboard benchmark: {len(frame):,} finished runs -> {len(points):,} chart points "
          f"({len(with_facets):,} with dtype x block facets); {os.cpu_count()} CPU cores; median of {args.repeat}")
    for name, seconds in figures.items():
        print(f"  {name:<52} {seconds * 1000:8.0f} ms")


if __name__ == "__main__":
    main()

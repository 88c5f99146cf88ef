"""Benchmark of the Frontier page on a large database (100,000 finished runs by default; --runs 1000000).

    python -m benchmarks.dashboard [--runs N] [--database-url URL [--fill]] [--repeat 3] [--warm 10]

Without --database-url it fills a fresh SQLite file: 2 teams, 100 sweeps, 5 families x 20 model
sizes x 121 configs (k 3..8 x 5 data types x 4 block sizes, plus 16-bit), each config re-run in
several sweeps with scores that follow the paper's shape. Runs are written with enqueue_sweep,
then their results in bulk (complete_run one by one would take minutes), in a child process so
the peak memory printed is the page's. With --database-url it times that database as it is, or
fills it first with --fill (it must be empty: a fresh Postgres database).

It then times the Frontier page through Streamlit's AppTest for two views, one sweep and one
family: the first visit (nothing stored: the analysis runs and its answer is written to
analysis_cache), cold (Streamlit's caches cleared, the stored answer read), warm (cached), and
after the view's runs changed (its newest finished run taken out for the measurement: the page
shows the previous answer while the new one is computed in the background, timed until stored),
plus the fingerprint query each view starts with, and prints the peak RSS after each view. Then
the dashboard's warming of the newest finished sweeps' and their families' pages (--warm), from
nothing stored.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update
from tqdm import tqdm

import kbit.dashboard
from benchmarks.timing import timed
from kbit.dashboard import data, stored, warm
from kbit.db import connect, queue, session_scope, teams
from kbit.db.models import AnalysisCache, Result, Run, RunBits
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
            if engine.dialect.name == "postgresql":
                # A server without autovacuum never refreshes its statistics: enqueue_sweep's lookups
                # would be planned for the empty tables the fill started with.
                with engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE")
            bar.update(count)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def page_once(url: str, view: dict, clear: bool) -> tuple[float, float]:
    """One visit of the Frontier page of `view` (URL query parameters) in a new AppTest session;
    clear: Streamlit's caches emptied first (a cold page). Returns (the page's own seconds: its
    options and its render, what a served dashboard spends on the request; AppTest's whole run,
    which adds a scan of every installed package for Streamlit components on each new AppTest, a
    cost a server pays once at start)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from kbit.dashboard.ui import common, frontier_page

    if clear:
        st.cache_data.clear()
    os.environ["KBIT_DATABASE_URL"] = url
    spent = [0.0]

    def timing(fn):
        def timed_fn(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return timed_fn

    render, options = frontier_page.render, common.cached_options
    frontier_page.render, common.cached_options = timing(render), timing(options)
    try:
        at = AppTest.from_file(str(APP), default_timeout=600)
        at.query_params.update({"page": "frontier", "metric": "mean_zero_shot/acc", **view})
        start = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - start
    finally:
        frontier_page.render, common.cached_options = render, options
    if at.exception or not at.get("vega_lite_chart"):
        raise RuntimeError(f"the Frontier page did not render: {[e.message for e in at.exception]}"
                           f" {[i.value for i in at.info]}")
    return spent[0], elapsed


def set_status(url: str, run_id: int, status: str) -> None:
    engine = connect(url)
    with session_scope(engine) as s:
        s.execute(update(Run).where(Run.id == run_id).values(status=status))
    engine.dispose()


def forget_stored(url: str) -> None:
    """Empty analysis_cache, so the next page computes its answer (a first visit)."""
    engine = connect(url)
    with session_scope(engine) as s:
        s.execute(delete(AnalysisCache))
    engine.dispose()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_view(url: str, name: str, view: dict, filters: dict, repeat: int) -> tuple[dict, float]:
    """({figure: (the page's own seconds, AppTest's seconds)}, peak RSS in MB) for one view."""
    figures = {}
    seconds, found = timed(lambda: data.fingerprint(url, **filters), repeat)
    figures[f"{name}: fingerprint query"] = (seconds, None)
    forget_stored(url)
    figures[f"{name}: first visit (analysis computed, stored)"] = page_once(url, view, clear=True)
    visits = [page_once(url, view, clear=True) for _ in range(repeat)]
    figures[f"{name}: cold (Streamlit caches cleared, stored row read)"] = median_pair(visits)
    visits = [page_once(url, view, clear=False) for _ in range(repeat)]
    figures[f"{name}: warm (cached)"] = median_pair(visits)
    # A run of the view changes (its newest finished run taken out and, after, put back): the page
    # shows the previous answer at once while the new one is computed in the background.
    last = found["last"]
    set_status(url, last, "failed")
    try:
        start = time.perf_counter()
        figures[f"{name}: after its runs changed (previous answer shown)"] = page_once(url, view, clear=True)
        stored.wait_for_updates()
        figures[f"{name}: ... the new answer stored, in the background"] = (time.perf_counter() - start, None)
    finally:
        set_status(url, last, "done")
    print(f"{name}: {found['runs']:,} runs; peak RSS {peak_rss_mb():,.0f} MB", flush=True)
    return figures, peak_rss_mb()


def time_warming(url: str, newest: int) -> tuple[dict, float]:
    """The dashboard's warming (kbit.dashboard.warm) of the `newest` finished sweeps and their
    families from nothing stored: seconds until every answer is stored, in the background thread;
    peak RSS in MB."""
    forget_stored(url)
    start = time.perf_counter()
    queued = warm.warm_newest(url, newest, warm.Warmed())
    stored.wait_for_updates()
    seconds = time.perf_counter() - start
    print(f"warmed {queued} in {seconds:.1f} s; peak RSS {peak_rss_mb():,.0f} MB", flush=True)
    sweeps, families = (sum(kind == k for kind, _ in queued) for k in ("sweep", "family"))
    name = f"warming the {sweeps} newest finished sweeps and their families ({families}), in the background"
    return {name: (seconds, None)}, peak_rss_mb()


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="finished runs to write (default 100000)")
    parser.add_argument("--database-url", help="time an existing database instead of filling a new SQLite file")
    parser.add_argument("--fill", action="store_true", help="fill the (empty) --database-url with --runs runs first")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure (median shown)")
    parser.add_argument("--warm", type=int, default=10, metavar="N",
                        help="also time warming the N newest finished sweeps' and their families' pages (default 10; 0: not)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        if args.fill or not args.database_url:
            start = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(target=populate, args=(url, args.runs))
            child.start()
            child.join()
            if child.exitcode:
                raise SystemExit(f"populating failed (exit {child.exitcode})")
            print(f"populated {args.runs:,} runs in {time.perf_counter() - start:.0f} s", flush=True)
        engine = connect(url)  # a writer upgrades the schema; the dashboard only reads it
        with session_scope(engine) as s:
            n_runs = s.scalar(select(func.count()).select_from(Run))
        engine.dispose()
        figures, peaks = {}, {}
        # The pages' figures are their own: no warming thread computes beside them (it is timed apart).
        os.environ["KBIT_DASHBOARD_WARM_SWEEPS"] = "0"
        # Each view in a process of its own, as a freshly started dashboard serves it: its peak RSS is its own.
        with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            for name, view, filters in (("one sweep", {"sweep": "1"}, {"sweeps": (1,)}),
                                        ("one family", {"family": FAMILIES[0]}, {"families": (FAMILIES[0],)})):
                found, peaks[name] = pool.apply(time_view, (url, name, view, filters, args.repeat))
                figures.update(found)
            if args.warm:
                found, peaks["warming"] = pool.apply(time_warming, (url, args.warm))
                figures.update(found)

    print(f"\nkbit dashboard benchmark: {n_runs:,} runs in the store; {os.cpu_count()} CPU cores; "
          f"median of {args.repeat}; load {Path('/proc/loadavg').read_text().split()[:3]}; peak RSS "
          + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in peaks.items()))
    print(f"  {'':<62} {'page':>8}    {'AppTest':>8}")
    for name, (page, whole) in figures.items():
        print(f"  {name:<62} {page * 1000:8.0f} ms " + (f"{whole * 1000:8.0f} ms" if whole is not None else ""))


if __name__ == "__main__":
    main()

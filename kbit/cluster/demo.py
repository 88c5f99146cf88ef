"""`kbit demo`: the whole service on one machine in minutes.

Builds (or reuses) the bundled model family, submits the demo sweep to an embedded Ray cluster
with SQLite (the same scheduler and workers a real cluster runs), follows it live, and prints
the frontier summary: for each bit budget, the best k / data type / block size and its score.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kbit.cluster.client import LocalService, RayService
from kbit.cluster.naming import bundled_parts
from kbit.cluster.report import best_k_per_budget, lower_is_better, pareto_front
from kbit.cluster.sweep import SweepError, family_entries, load_sweep
from kbit.db import errors, queries, session_scope, teams
from kbit.db.engine import kbit_home

DEMO_TEAM = "demo"
TASK, METRIC = "mean_zero_shot", "acc"
# Held-out bits per byte beside accuracy: on the small bundled family it is the sharper signal.
SUMMARY_METRICS = ((TASK, METRIC), ("kbit_heldout", "bits_per_byte"))


def default_sweep_path() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def demo_team(engine) -> tuple[str, str]:
    """The demo team and its token, created on first use and kept in $KBIT_HOME/demo-token."""
    token_file = kbit_home() / "demo-token"
    with session_scope(engine) as s:
        if token_file.exists():
            token = token_file.read_text().strip()
            try:
                teams.verify_token(s, DEMO_TEAM, token)
                return DEMO_TEAM, token
            except errors.AuthError:
                pass
        try:
            token = teams.create_team(s, DEMO_TEAM)
        except errors.Conflict:
            token = teams.rotate_token(s, DEMO_TEAM)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(token)
    token_file.chmod(0o600)
    return DEMO_TEAM, token


def with_family(sweep, family: str):
    """The same grid over every member of another bundled family (e.g. micro for a quick check)."""
    from kbit.workers.family import family_members

    try:
        members = list(family_members(family))
    except (KeyError, ValueError):
        members = []
    if not members:
        raise SweepError("--family", [f"{family!r} is not a bundled model family; use demo or micro"])
    models = tuple(family_entries(members))
    return dataclasses.replace(sweep, models=models, name=f"{sweep.name}-{family}")


def build_families(sweep, out: Console) -> None:
    """Build the bundled models here, before the sweep starts, so parallel workers find them ready
    (and the build shows its progress here, not in a worker's log)."""
    from kbit.workers import family

    ensure = getattr(family, "ensure_model", None)
    bundled = [m.model for m in sweep.models if bundled_parts(m.model)]
    if ensure is None:  # this kbit.workers builds bundled models on first use only
        out.print(f"{len(bundled)} bundled models are built on first use under {kbit_home() / 'models'}")
        return
    for model in bundled:
        started = time.perf_counter()
        out.print(f"model {model}: ", end="")
        path = ensure(model)
        out.print(f"ready ({time.perf_counter() - started:.0f} s) at {path}")


def frontier_summary(engine, sweep_id: int, task: str = TASK, metric: str = METRIC) -> tuple[list[dict], list[dict]]:
    """From the database: per bit budget (each model's 4-bit footprint) the best run that fits, and
    the Pareto frontier of total bits against score."""
    lower = lower_is_better(metric)
    with session_scope(engine) as s:
        rows = queries.frontier_rows(s, task=task, metric=metric, sweeps=[sweep_id])
    return best_k_per_budget(rows, lower), pareto_front(rows, lower)


def summary_table(budgets: list[dict], task: str = TASK, metric: str = METRIC) -> Table:
    better = "lower" if lower_is_better(metric) else "higher"
    table = Table(title=f"best precision per bit budget ({task}/{metric}, {better} is better)")
    for column in ("budget (Mbit)", "= 4-bit size of", "best k", "dtype", "blocksize", "model", "score"):
        table.add_column(column)
    for entry in budgets:
        best = entry["best"]
        table.add_row(
            f"{entry['budget_bits'] / 1e6:.3f}", entry["budget_model"], str(best["bits"]), best["dtype"],
            str(best["blocksize"] or "-"), best["model"], f"{best['value']:.4f}",
        )
    return table


def run_demo(sweep_path: str | None, family: str | None, out: Console) -> int:
    path = Path(sweep_path) if sweep_path else default_sweep_path()
    sweep = load_sweep(path)
    if family:
        sweep = with_family(sweep, family)
    out.print(f"kbit demo: {sweep.n_runs} runs ({len(sweep.models)} models x {len(sweep.configs)} configs), "
              f"data in {kbit_home()}")
    build_families(sweep, out)
    with LocalService() as local:
        team, token = demo_team(local.engine)
        with RayService(None) as svc:
            from kbit.cluster.commands import finish

            reply = svc.call("submit", spec=sweep.spec(), team=team, token=token, submitter="demo")
            out.print(f"sweep {reply['sweep_id']}: {reply['total']} runs, {reply['cached']} cached")
            finish(svc, reply["sweep_id"], out)
        summaries = [(task, metric, *frontier_summary(local.engine, reply["sweep_id"], task, metric))
                     for task, metric in SUMMARY_METRICS]
    for task, metric, budgets, front in summaries:
        if not budgets:
            continue
        out.print(summary_table(budgets, task, metric))
        winners = [e["best"]["bits"] for e in budgets]
        out.print(f"4-bit wins {winners.count(4)} of {len(winners)} budgets; "
                  f"k on the frontier of {metric} against total bits: {', '.join(str(k) for k in sorted({r['bits'] for r in front}))}")
    if not summaries[0][2]:
        out.print("no finished runs with a mean zero-shot accuracy: see `kbit status` for failures")
    out.print("open the dashboard on these results: kbit dashboard   (then http://127.0.0.1:8501)")
    out.print("write the report: kbit report   (docs/RESULTS.md)")
    return 0

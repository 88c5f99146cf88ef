"""Comparisons across teams and sweeps: a model x task table of one metric (mean ± stderr), and two
teams or sweeps compared at equal bits (kbit.analysis.teams) with the tables the Compare page
shows. No Streamlit: `side_comparison` reads the database through kbit.dashboard.data, the rest is
pure pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kbit.analysis.frontier import rows_to_frame
from kbit.analysis.teams import Side, SideComparison, compare_sides, interval_columns, parse_side, row_interval
from kbit.dashboard import data
from kbit.db import queries, session_scope


def metric_tasks(results: pd.DataFrame, metric: str) -> list[str]:
    """The tasks that have `metric` among results_rows' "task/metric" columns."""
    return sorted(c.split("/", 1)[0] for c in results.columns if "/" in c and c.split("/", 1)[1] == metric)


def metric_names(results: pd.DataFrame) -> list[str]:
    """Every metric name among results_rows' "task/metric" columns (stderr columns excluded)."""
    return sorted({c.split("/", 1)[1] for c in results.columns if "/" in c and not c.endswith("_stderr")})


def task_table(results: pd.DataFrame, metric: str, label: str, group: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For the runs of config `label`: per (group, model) and task, the mean of `metric` over the runs
    and its stderr, sqrt(sum se^2) / n (the runs are independent).

    Returns (long numeric frame: group, model, task, mean, stderr, runs; display pivot with one
    "0.412 ± 0.012" cell per task).
    """
    tasks = metric_tasks(results, metric)
    columns = [group, "model", "task", "mean", "stderr", "runs"]
    if results.empty or not tasks or "label" not in results:
        return pd.DataFrame(columns=columns), pd.DataFrame()
    chosen = results[(results["label"] == label) & results["status"].isin(["done", "cached"])]
    parts = []
    for task in tasks:
        value, stderr = f"{task}/{metric}", f"{task}/{metric}_stderr"
        frame = chosen[[group, "model", value] + ([stderr] if stderr in chosen else [])].dropna(subset=[value])
        if frame.empty:
            continue
        frame = frame.rename(columns={value: "value", stderr: "se"})
        if "se" not in frame:
            frame["se"] = np.nan
        agg = frame.groupby([group, "model"], sort=True).agg(
            mean=("value", "mean"), se2=("se", lambda s: float((s**2).sum()) if s.notna().all() else np.nan),
            runs=("value", "size"),
        ).reset_index()
        agg["stderr"] = np.sqrt(agg.pop("se2")) / agg["runs"]
        parts.append(agg.assign(task=task))
    if not parts:
        return pd.DataFrame(columns=columns), pd.DataFrame()
    long = pd.concat(parts, ignore_index=True)[columns]
    cells = long.assign(cell=[
        f"{m:.4f}" + ("" if np.isnan(s) else f" ± {s:.4f}") for m, s in zip(long["mean"], long["stderr"])
    ])
    pivot = cells.pivot(index=[group, "model"], columns="task", values="cell").reset_index()
    pivot.columns.name = None
    return long, pivot


def side_comparison(url: str | None, task: str, metric: str, a: str, b: str, filters: tuple = ()) -> SideComparison:
    """kbit.analysis.teams.compare_sides of sides `a` and `b` ('team:nlp', 'sweep:3') over their
    finished runs of `task/metric`, under the page's other filters (data.frontier's keywords;
    a side's own team or sweep replaces that filter), with their per-document scores. TooManyRuns
    when a side has more finished runs than KBIT_DASHBOARD_MAX_RUNS (before anything is read)."""
    sides = parse_side(a), parse_side(b)
    for side in sides:
        data.fingerprint(url, **{**dict(filters), **side.filters()})
    rows = {}
    with session_scope(data.engine_for(url)) as s:
        for side in sides:
            wanted = {**dict(filters), **side.filters()}
            for row in queries.frontier_rows(s, task=task, metric=metric, **wanted):
                rows[row["run_id"]] = row
        scores = queries.document_scores(s, list(rows), task, metric)
    frame = rows_to_frame([rows[i] for i in sorted(rows)])
    return compare_sides(frame, f"{task}/{metric}", *sides, scores)


def side_key(group: str, item) -> str:
    """The page's team name or sweep id as a side of kbit.analysis.teams ('team:nlp', 'sweep:3')."""
    return Side(group, str(item)).key


def verdict_table(c: SideComparison) -> pd.DataFrame:
    """Overall and per k at equal bits: the verdict with the sides' names, Δ (B − A) and its interval."""
    rows = [{"scope": "all k", "verdict": c.text(c.overall["verdict"], c.overall["delta"]),
             **interval_columns(c.overall["delta"]), "budgets": c.overall["n_budgets"]}]
    for r in c.per_k.to_dict("records"):
        rows.append({"scope": f"{r['k']}-bit", "verdict": c.text(r["verdict"], row_interval(r)),
                     "delta": r["delta"], "delta_low": r["delta_low"], "delta_high": r["delta_high"],
                     "budgets": r["n_budgets"]})
    return pd.DataFrame(rows, columns=["scope", "verdict", "delta", "delta_low", "delta_high", "budgets"])


def pairs_table(c: SideComparison) -> pd.DataFrame:
    """The configs both sides ran: each side's score and run, Δ (B − A) with its interval, the
    verdict, and which pairs are one shared (cached) run."""
    pairs = c.pairs
    columns = ["model", "config", "A", "B", "delta", "delta_low", "delta_high", "verdict", "shared", "run_a", "run_b"]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    out = pairs.rename(columns={"label": "config", "a": "A", "b": "B"})
    out["verdict"] = ["shared" if s else c.text(v, row_interval(r)) for v, s, r in
                      zip(pairs["verdict"], pairs["shared"], pairs.to_dict("records"))]
    return out[columns]


def difference_frame(c: SideComparison) -> pd.DataFrame:
    """The difference chart's rows: one per pair both ran, 'model · config', Δ and its interval,
    and the verdict as the legend names it (a side's name, undecided, shared)."""
    table = pairs_table(c)
    out = table.assign(row=table["model"].astype(str) + " · " + table["config"].astype(str))
    out["verdict"] = [v.split(" (")[0] if v.startswith("undecided") else v for v in out["verdict"]]
    return out.fillna({"delta": 0.0})



def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """data.frontier's runs as the page lists them: who ran what, its score, and 'cached from run
    #N' for a run reused from the cache."""
    reused = frame["cached_from"] if "cached_from" in frame else pd.Series(np.nan, index=frame.index)
    shown = frame.assign(reused=[f"cached from run #{int(r)}" if pd.notna(r) else "" for r in reused])
    return shown[[c for c in ("run_id", "team", "sweep", "model", "label", "value", "stderr", "total_bits", "reused")
                  if c in shown]]

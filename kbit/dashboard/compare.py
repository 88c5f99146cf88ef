"""Comparisons across teams and sweeps, in pandas: a model x task table of one metric (mean ±
stderr) and the per-config difference between two sweeps. Pure functions, no Streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kbit.analysis.frontier import average_repeats


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


def sweep_difference(a: pd.DataFrame, b: pd.DataFrame, lower: bool) -> pd.DataFrame:
    """Per (model, config) present in both sweeps: a, b, delta = b - a and whether b is better.

    `a` and `b` are rows_to_frame frames of one metric; repeat runs within a sweep are averaged.
    """
    keys = ["model", "label", "bits", "dtype", "block"]
    columns = [*keys, "a", "b", "delta", "better", "row"]

    def per_config(frame):
        usable = frame[frame["value"].notna()]
        if usable.empty:
            return pd.DataFrame(columns=[*keys, "value"])
        usable = usable.assign(total_bits=usable["total_bits"].fillna(0.0))
        return average_repeats(usable, keys=keys)[[*keys, "value"]]

    both = per_config(a).merge(per_config(b), on=keys, suffixes=("_a", "_b"))
    if both.empty:
        return pd.DataFrame(columns=columns)
    both = both.rename(columns={"value_a": "a", "value_b": "b"})
    both["delta"] = both["b"] - both["a"]
    both["better"] = both["delta"] < 0 if lower else both["delta"] > 0
    both["row"] = both["model"].astype(str) + " · " + both["label"].astype(str)
    return both[columns].sort_values("delta", ascending=lower).reset_index(drop=True)


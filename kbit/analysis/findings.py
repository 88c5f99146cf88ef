"""The paper's three findings, checked against one metric's runs: pure pandas, no text.

`findings(frame, metric)` takes rows_to_frame's runs and returns what the report shows: the
winners per budget and the frontier (from `frontier_view`, the same answer the demo and the
dashboard give), mean scores by block size and by data type at 3 to 5 bits, the noise level,
and a verdict on each finding ("agrees", "differs", "not enough data").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from kbit.analysis.frontier import frontier_view, plottable
from kbit.analysis.metrics import lower_is_better

FINDINGS = (
    "4-bit is almost always optimal for a fixed total of model bits",
    "small blocks (64-128) help at 3-5 bits",
    "quantile and float beat integer and dynamic exponent",
)
GOOD_DTYPES, WEAK_DTYPES = ("quantile", "fp", "nf"), ("int", "dynamic")
SMALL_K = (3, 4, 5)


@dataclass
class Findings:
    metric: str
    lower: bool
    n_runs: int
    models: list[tuple[float, str]]  # (parameters, model id), smallest first
    median_stderr: float | None
    budgets: pd.DataFrame  # frontier_view's table: budget_bits, best_k, best_label, best_model, best_value, k=...
    frontier: pd.DataFrame  # the points on the Pareto frontier, by total bits
    block_means: dict[int, dict] = field(default_factory=dict)  # k -> {blocksize (None: per tensor): mean}
    dtype_means: dict[int, dict] = field(default_factory=dict)  # k -> {dtype: mean}
    block_small_best: dict[int, bool] = field(default_factory=dict)
    dtype_order: dict[int, bool] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)  # one per FINDINGS; empty without data

    @property
    def winners(self) -> list[int]:
        return [int(k) for k in self.budgets["best_k"]] if not self.budgets.empty else []

    @property
    def frontier_ks(self) -> list[int]:
        return sorted({int(k) for k in self.frontier["bits"]}) if not self.frontier.empty else []


def mean_by(frame: pd.DataFrame, key: str, bits: int) -> dict:
    """Mean score of the k-bit runs grouped by `key` (dtype or blocksize), over models and the other axes."""
    groups: dict = {}
    runs = frame[frame["bits"] == bits]
    for value, score in zip(runs[key], runs["value"]):
        name = None if pd.isna(value) else (int(value) if key == "blocksize" else value)
        groups.setdefault(name, []).append(float(score))
    return {name: sum(scores) / len(scores) for name, scores in groups.items()}


def verdict(ok: bool | None) -> str:
    return {True: "agrees", False: "differs", None: "not enough data"}[ok]


def _majority(flags: dict) -> bool | None:
    return None if not flags else sum(flags.values()) * 2 > len(flags)


def findings(frame: pd.DataFrame, metric: str) -> Findings:
    lower = lower_is_better(metric)
    usable = plottable(frame)
    points, budgets = frontier_view(usable, metric)
    front = points[points["on_frontier"]].sort_values("total_bits") if not points.empty else points
    stderrs = sorted(float(s) for s in usable["stderr"].dropna() if s) if "stderr" in usable else []
    models = sorted({(float(n) if pd.notna(n) else 0.0, m) for n, m in zip(usable["n_params"], usable["model"])})
    out = Findings(
        metric=metric, lower=lower, n_runs=len(usable), models=models,
        median_stderr=stderrs[len(stderrs) // 2] if stderrs else None, budgets=budgets, frontier=front,
    )
    if usable.empty:
        return out
    best = min if lower else max
    for k in SMALL_K:
        blocks = mean_by(usable, "blocksize", k)
        if blocks:
            out.block_means[k] = blocks
            sized = {b: v for b, v in blocks.items() if b}
            if len(sized) > 1:
                out.block_small_best[k] = best(sized, key=sized.get) == min(sized)
        dtypes = mean_by(usable, "dtype", k)
        if dtypes:
            out.dtype_means[k] = dtypes
            good = [dtypes[d] for d in GOOD_DTYPES if d in dtypes]
            weak = [dtypes[d] for d in WEAK_DTYPES if d in dtypes]
            if good and weak:
                out.dtype_order[k] = best(good) < best(weak) if lower else best(good) > best(weak)
    wins = out.winners
    out.verdicts = [
        verdict(None if not wins else wins.count(4) * 2 > len(wins)),
        verdict(_majority(out.block_small_best)),
        verdict(_majority(out.dtype_order)),
    ]
    return out

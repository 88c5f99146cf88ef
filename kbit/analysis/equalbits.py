"""Which group of configs (a precision k, a block-size class, a data-type class) scores best at
equal model bits, with a 95% interval: the answer to "at this many bits, which precision wins?".

A group's configs are known by label (e.g. 'nf4-b64'). Each label's curve is its score against
log2 bits across model sizes, interpolated piecewise-linearly between measured sizes and never
extrapolated. At a budget, a group scores what its best label scores there, the label being chosen
on one half of the documents and scored on the other (both ways round, averaged), so a group tried
in more configs does not win by selection. Budgets are a log-spaced grid over the bits that at
least two groups cover; a budget that not every compared group reaches is *partial*: its lead is
shown, never decided (the missing groups are named), so coverage alone never makes a winner. Every
bootstrap replicate of `resample.run_draws` goes through the same steps, so an interval holds the
noise of the documents and of the choice of config. The margins of a table share one simultaneous
95% band; a margin whose band includes zero is undecided. Runs of one size trained with several seeds
(`kbit/demo/s1@seed2`) are one point, their seeds resampled before the documents (`seeds.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kbit.analysis import multiplicity, seeds
from kbit.analysis.metrics import lower_is_better
from kbit.analysis.resample import FULL, HALF_A, run_draws

N_BOOT = 4000
N_BUDGETS = 12
LEVEL = 0.95
# total: model bits as stored (16-bit embeddings, head and norms included); quantized: the bits of
# the quantizable weights only; paper: every parameter charged at the config's bits per parameter
X_AXES = ("total", "quantized", "paper")


@dataclass(frozen=True)
class Interval:
    """A statistic's observed value and its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    @property
    def decided(self) -> bool:
        """The interval excludes zero (and is an interval: with no noise known nothing is decided)."""
        return self.high > self.low and (self.low > 0 or self.high < 0)

    @classmethod
    def of(cls, draws: np.ndarray, level: float = LEVEL) -> "Interval":
        """draws[0] is the observed statistic, draws[1:] its bootstrap replicates; a two-sided
        percentile interval at `level`."""
        replicates = draws[1:][np.isfinite(draws[1:])]
        if not np.isfinite(draws[0]) or replicates.size == 0:
            return cls(float(draws[0]), float("nan"), float("nan"))
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(replicates, [tail, 100 - tail])
        return cls(float(draws[0]), float(low), float(high))


@dataclass
class Curve:
    """One config label across model sizes: log2 bits (increasing) and the draws at each size."""

    label: str
    x: np.ndarray
    draws: list[np.ndarray]  # per size, (3, R + 1): the runs' own arrays, not copies

    def covers(self, budget: float) -> bool:
        return len(self.x) >= 2 and self.x[0] - 1e-12 <= budget <= self.x[-1] + 1e-12

    def segment(self, budget: float) -> tuple[int, float]:
        """(j, t): log2 bits `budget` (which the curve covers) lies a fraction t of the way from
        size j to size j + 1; the curve's draws there are draws[j] * (1 - t) + draws[j + 1] * t."""
        j = min(max(int(np.searchsorted(self.x, budget, side="right")) - 1, 0), len(self.x) - 2)
        return j, (budget - self.x[j]) / (self.x[j + 1] - self.x[j])


@dataclass
class Comparison:
    """Groups compared at equal bits. `score[g]` is (R + 1, budgets) in the metric's units (NaN
    where g does not cover the budget); `table` has one row per budget (see `budget_table`)."""

    metric: str
    lower: bool
    x_axis: str
    groups: list[str]
    budgets: np.ndarray  # bits
    score: dict[str, np.ndarray]
    best_label: dict[str, list]
    evidence: dict[str, int]
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    draws: dict[int, np.ndarray] = field(default_factory=dict)  # resample.run_draws of the compared runs

    def goodness(self, group: str) -> np.ndarray:
        """The group's score with higher always better."""
        return -self.score[group] if self.lower else self.score[group]

    def advantage(self, group: str, others: list[str]) -> np.ndarray:
        """(R + 1, budgets): how much better `group` scores than the best of `others`, in the metric's
        units (positive: `group` is better); NaN where it or all of the others do not cover."""
        rivals = np.stack([self.goodness(o) for o in others if o in self.score])
        best_rival = np.where(np.isnan(rivals), -np.inf, rivals).max(axis=0)
        best_rival[np.isneginf(best_rival)] = np.nan
        return self.goodness(group) - best_rival


def x_bits(frame: pd.DataFrame, x_axis: str) -> pd.Series:
    """Bits on the x axis: total model bits; the bits of the quantizable weights (the model's largest
    n_quantized over its runs; the 16-bit embeddings and head left out); or the paper's, every
    parameter at the config's bits per parameter (block scales and outliers included)."""
    if x_axis == "total":
        return frame["total_bits"]
    if x_axis not in X_AXES:
        raise ValueError(f"x axis {x_axis!r} is not known; use one of {', '.join(X_AXES)}")
    if x_axis == "paper":
        return frame["n_params"] * frame["bits_per_param"]
    if "n_quantized" not in frame:
        raise ValueError("the quantized-bits axis needs each run's n_quantized (kbit.db.queries.frontier_rows gives it)")
    quantizable = frame.groupby("model")["n_quantized"].transform("max")
    return frame["total_bits"] - 16.0 * (frame["n_params"] - quantizable)


def draws_of(frame: pd.DataFrame, metric: str, scores: dict | None, x_axis: str = "total", n_boot: int = N_BOOT,
             seed: int = 0) -> tuple[dict, dict]:
    """resample.run_draws of the runs `compare` would pick from `frame` (one per config placed on
    the axis; a config's seeds pooled under its `one_run_per_config` run), to hand to several
    comparisons of subsets of them."""
    frame = seeds.points(frame)
    placed = frame.assign(x=x_bits(frame, x_axis)) if len(frame) else frame.assign(x=pd.Series(dtype=float))
    return seed_draws(seed_runs(placed[placed["x"] > 0]), scores, metric, n_boot, seed)


def seed_draws(runs: pd.DataFrame, scores: dict | None, metric: str, n_boot: int, seed: int) -> tuple[dict, dict]:
    """run_draws of `seed_runs`' rows, each config's seeds pooled under its `one_run_per_config` run."""
    return seeds.pooled(runs, *run_draws(runs, scores, metric, n_boot, seed), n_boot, seed)


def seed_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The lowest run id of each (model, seed, label) that can be placed on the bits axis."""
    return first_run_per_config(frame[frame["total_bits"].notna() & (frame["total_bits"] > 0)])


def one_run_per_config(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, label) that can be placed on the bits axis: the lowest run id, or, for a
    model trained with several seeds, the row standing for all of them (seeds.collapse)."""
    return seeds.collapse(seed_runs(seeds.points(frame)))


def first_run_per_config(frame: pd.DataFrame) -> pd.DataFrame:
    """The lowest run id of each (model, label) with a value (of each seed, after seeds.points):
    repeats of a config are one measurement here."""
    usable = frame[frame["value"].notna()]
    keys = ["model", seeds.SEED, "label"] if seeds.SEED in usable else ["model", "label"]
    return usable.sort_values("run_id", kind="mergesort").drop_duplicates(keys)


def curves_of(configs: pd.DataFrame, draws: dict[int, np.ndarray]) -> list[Curve]:
    """One curve per (family, label) with at least two model sizes: a curve never joins the
    models of two families. The family prefixes the label when there are several."""
    out = []
    families = configs["family"].fillna("") if "family" in configs else pd.Series("", index=configs.index)
    several = families.nunique() > 1
    # one sort, then runs of equal (family, label): a groupby of 1,100 labels per comparison was a
    # tenth of a 12,100-config analysis
    points = pd.DataFrame({"family": families.to_numpy(), "label": configs["label"].to_numpy(),
                           "x": configs["x"].to_numpy(dtype=float), "run_id": configs["run_id"].to_numpy()})
    points = points[points["label"].notna()].sort_values(["family", "label", "x"], kind="mergesort")
    family, label = points["family"].to_numpy(), points["label"].to_numpy()
    x, run_ids = points["x"].to_numpy(), points["run_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, (family[1:] != family[:-1]) | (label[1:] != label[:-1])])
    for start, end in zip(starts, [*starts[1:], len(points)]):
        if len(np.unique(x[start:end])) < 2:
            continue
        name = f"{family[start]}:{label[start]}" if several else str(label[start])
        out.append(Curve(name, np.log2(x[start:end]), [draws[int(r)] for r in run_ids[start:end]]))
    return out


def group_at(curves: list[Curve], budget: float, lower: bool) -> tuple[np.ndarray, str] | None:
    """(R + 1,) cross-fitted score of a group at `budget`, and its best label on all documents."""
    covering = [c for c in curves if c.covers(budget)]
    if not covering:
        return None
    # Only the halves over the replicates, and the whole data's value, are read: interpolating the
    # full rows too, and copying the stack to rank it, was most of a 12,100-config analysis.
    dtype = covering[0].draws[0].dtype
    halves = np.empty((len(covering), 2, len(covering[0].draws[0][0])), dtype=dtype)
    whole = np.empty(len(covering), dtype=dtype)
    for i, curve in enumerate(covering):  # the segment found once for both reads
        j, t = curve.segment(budget)
        low, high = curve.draws[j], curve.draws[j + 1]
        halves[i] = low[HALF_A:] * (1 - t) + high[HALF_A:] * t
        whole[i] = low[FULL, 0] * (1 - t) + high[FULL, 0] * t
    on_a, on_b = _best(halves[:, 0, :], lower), _best(halves[:, 1, :], lower)
    replicate = np.arange(halves.shape[-1])
    score = (halves[on_a, 1, replicate] + halves[on_b, 0, replicate]) / 2
    return score, covering[int(_best(whole, lower))].label


def _best(values: np.ndarray, lower: bool):
    """argmax over the first axis of the scores with higher better (NaN never best; an all-NaN
    column gives 0), without copying `values` unless it holds a NaN."""
    good = -values if lower else values
    if np.isnan(good).any():
        good = np.where(np.isnan(good), -np.inf, good)
    return good.argmax(axis=0)


def budget_grid(curves: dict[str, list[Curve]], n_budgets: int) -> np.ndarray:
    """log2 budgets: evenly spaced over the range at least two groups cover."""
    spans = [(min(c.x[0] for c in cs), max(c.x[-1] for c in cs)) for cs in curves.values() if cs]
    if len(spans) < 2:
        return np.array([])
    ends = sorted({x for span in spans for x in span})
    covered = [(a, b) for a, b in zip(ends, ends[1:]) if sum(lo <= a and b <= hi for lo, hi in spans) >= 2]
    if not covered:
        return np.array([])
    lo, hi = covered[0][0], covered[-1][1]
    grid = np.linspace(lo, hi, n_budgets)
    return np.array([b for b in grid if sum(lo_ - 1e-12 <= b <= hi_ + 1e-12 for lo_, hi_ in spans) >= 2])


def compare(
    frame: pd.DataFrame,
    metric: str,
    groups: dict[str, pd.Series],
    scores: dict | None = None,
    x_axis: str = "total",
    n_boot: int = N_BOOT,
    n_budgets: int = N_BUDGETS,
    seed: int = 0,
    drawn: tuple[dict, dict] | None = None,
) -> Comparison:
    """Compare `groups` (name -> boolean mask over `frame`'s rows) at equal bits. `frame` is
    rows_to_frame's runs for `metric`; `scores` the runs' per-document scores for it (optional);
    `drawn`, `draws_of` a superset of these runs (several comparisons of one family's runs resample
    them once)."""
    lower = lower_is_better(metric)
    frame = seeds.points(frame)
    frame = frame.assign(x=x_bits(frame, x_axis)) if len(frame) else frame.assign(x=pd.Series(dtype=float))
    usable = frame[frame["x"] > 0]
    # One run per config within each group: two groups that both ran a config (two teams) keep one each.
    runs = {name: seed_runs(usable[mask.reindex(usable.index, fill_value=False)]) for name, mask in groups.items()}
    picked = {name: seeds.collapse(of_group) for name, of_group in runs.items()}
    configs = pd.concat(list(picked.values())).drop_duplicates("run_id") if picked else usable.iloc[:0]
    if drawn is not None and all(int(r) in drawn[0] for r in configs["run_id"]):
        ids = [int(r) for r in configs["run_id"]]
        draws, evidence = {r: drawn[0][r] for r in ids}, {r: drawn[1][r] for r in ids}
    else:
        every = pd.concat(list(runs.values())).drop_duplicates("run_id") if runs else usable.iloc[:0]
        draws, evidence = seed_draws(every, scores, metric, n_boot, seed)
    curves = {name: curves_of(runs, draws) for name, runs in picked.items()}
    budgets = budget_grid(curves, n_budgets)
    score = {name: np.full((n_boot + 1, len(budgets)), np.nan) for name in groups}
    best_label: dict[str, list] = {name: [None] * len(budgets) for name in groups}
    for i, budget in enumerate(budgets):
        for name, group_curves in curves.items():
            found = group_at(group_curves, budget, lower)
            if found is not None:
                score[name][:, i], best_label[name][i] = found
    counts = pd.Series(list(evidence.values()), dtype=object).value_counts().to_dict()
    out = Comparison(metric, lower, x_axis, list(groups), 2.0**budgets, score, best_label, counts, draws=draws)
    out.table = budget_table(out)
    return out


def budget_table(comp: Comparison) -> pd.DataFrame:
    """One row per budget: each group's score (NaN: the group's curves do not reach it), the
    winner and its best config, the margin over the best other group with its interval, the groups
    `compared` there and those `missing` (compared elsewhere, not reaching this budget). A budget
    with any missing is `partial`: never decided, whatever its interval. The intervals are one
    simultaneous 95% band over all the table's budgets (multiplicity.simultaneous_level, from the same
    replicates), so "decided at N budgets" holds for all N at once, not each at 95% on its own."""
    reaching = [g for g in comp.groups if np.isfinite(comp.score[g][0]).any()]
    rows, leads = [], {}
    for i, budget in enumerate(comp.budgets):
        present = [g for g in comp.groups if np.isfinite(comp.score[g][0, i])]
        missing = [g for g in reaching if g not in present]
        row = {"budget_bits": float(budget), **{g: float(comp.score[g][0, i]) for g in comp.groups},
               "compared": present, "missing": missing, "partial": bool(missing)}
        if len(present) >= 2:
            winner = max(present, key=lambda g: comp.goodness(g)[0, i])
            leads[i] = comp.advantage(winner, [g for g in present if g != winner])[:, i]
            row.update(winner=winner, winner_label=comp.best_label[winner][i], n_groups=len(present))
        rows.append(row)
    level = multiplicity.simultaneous_level(np.stack(list(leads.values()), axis=1)) if leads else LEVEL
    for i, lead in leads.items():
        margin = Interval.of(lead, level)
        rows[i].update(margin=margin.value, margin_low=margin.low, margin_high=margin.high,
                       decided=margin.decided and not rows[i]["missing"], band_level=level)
    columns = ["budget_bits", *comp.groups, "winner", "winner_label", "margin", "margin_low", "margin_high", "decided",
               "n_groups", "compared", "missing", "partial", "band_level"]
    return pd.DataFrame(rows, columns=columns)

"""Two teams (or two sweeps) compared the way precisions are: at equal bits, with intervals.

`compare_sides(frame, metric, a, b, scores)` takes rows_to_frame's runs of both sides (and their
per-document scores) and answers "whose configs do better, by how much, with what confidence":

- **At equal bits** (`equalbits.compare` with the two sides as its groups): at each budget a side
  scores what its best config scores there (chosen on one half of the documents, scored on the
  other), overall and within each k both sides ran. The difference is B − A in the metric's
  units, averaged over the budgets both sides cover, with the 95% interval of the paired bootstrap
  over documents (`resample.run_draws`: runs of one model share the document draws, whichever
  side ran them).
- **Configs both ran** (same model, same config label): B − A per pair with its interval, and the
  mean over the pairs that are two measurements.
- **Every config accounted for**: configs, models and (model, config) cells only one side ran.

A run reused from the cache (`cached_from`, set when a run's cache key already had a result)
stores no result of its own: it is the measurement of its source run. When both sides' runs of a
config have the same source, the pair is **shared** ("cached from run #N") and carries no
verdict; in the equal-bits comparison its draws are identical on both sides, so it can make a
budget a tie, never a win. Verdicts (`VERDICTS`): "A better" / "B better" only when the 95%
interval excludes zero, "undecided" inside the noise, "same runs" when both sides' scores are the
same runs, "not enough data" when the runs cannot answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kbit.analysis import equalbits
from kbit.analysis.equalbits import Interval, first_run_per_config
from kbit.analysis.metrics import lower_is_better
from kbit.analysis.resample import DOCUMENTS, FULL, run_draws, sources_of

SIDE_KINDS = ("team", "sweep")
VERDICTS = ("A better", "B better", "undecided", "same runs", "not enough data")
SHARED = "same runs"


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a team (`team:nlp`) or a sweep (`sweep:3`)."""

    kind: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"

    @property
    def name(self) -> str:
        """How outputs name the side: the team's name, or 'sweep #3'."""
        return self.value if self.kind == "team" else f"sweep #{self.value}"

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """Which of rows_to_frame's rows belong to this side."""
        if self.kind == "team":
            return frame["team"].astype(str) == self.value
        return pd.to_numeric(frame["sweep_id"], errors="coerce") == int(self.value)

    def filters(self) -> dict:
        """The kbit.db.queries.frontier_rows filter that reads this side's runs."""
        return {"teams": (self.value,)} if self.kind == "team" else {"sweeps": (int(self.value),)}


def parse_side(text: str) -> Side:
    """'team:nlp' or 'sweep:3' -> Side (ValueError with the fix otherwise)."""
    kind, sep, value = text.strip().partition(":")
    if not sep or kind not in SIDE_KINDS or not value.strip():
        raise ValueError(f"{text.strip()!r} is not a side to compare; write team:NAME or sweep:ID (e.g. team:nlp)")
    value = value.strip()
    if kind == "sweep" and not value.isdigit():
        raise ValueError(f"{text.strip()!r}: a sweep is named by its id (sweep:3)")
    return Side(kind, value)


def parse_sides(text: str) -> tuple[Side, Side]:
    """'team:nlp,team:vision' -> (A, B)."""
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) != 2:
        raise ValueError(f"--compare takes two sides, A,B (e.g. team:nlp,team:vision); got {text!r}")
    a, b = (parse_side(p) for p in parts)
    if a == b:
        raise ValueError(f"--compare: both sides are {a.key}; name two different teams or sweeps")
    return a, b


def verdict_of(delta: Interval | None, lower: bool, same: bool = False) -> str:
    """The verdict on a difference B − A in the metric's units."""
    if same:
        return SHARED
    if delta is None or not math.isfinite(delta.value):
        return "not enough data"
    if not delta.decided:
        return "undecided"
    return "B better" if (delta.value < 0) == lower else "A better"


def verdict_text(verdict: str, a: str, b: str, delta: Interval | None = None, lower: bool = False) -> str:
    """How a verdict reads with the sides' names: 'vision better', 'undecided (vision ahead)'."""
    if verdict in ("A better", "B better"):
        return f"{a if verdict == 'A better' else b} better"
    if verdict == "undecided" and delta is not None and math.isfinite(delta.value) and delta.value != 0:
        return f"undecided ({b if (delta.value < 0) == lower else a} ahead)"
    return verdict


@dataclass
class SideComparison:
    """Everything a comparison of two sides shows; tables are DataFrames, B − A in metric units."""

    metric: str
    lower: bool
    x_axis: str
    a: Side
    b: Side
    overall: dict  # verdict, delta (Interval | None), n_budgets
    per_k: pd.DataFrame  # k, verdict, delta, delta_low, delta_high, n_budgets
    budgets: pd.DataFrame  # budget_bits, a, b, a_config, b_config, delta, delta_low, delta_high, verdict
    pairs: pd.DataFrame  # model, label, bits, run_a, run_b, a, b, delta, delta_low, delta_high, verdict, shared, evidence
    matched: dict  # n, counts per verdict, delta (Interval | None): the mean over the pairs not shared
    runs: pd.DataFrame  # every run of either side: side, run_id, ..., cached_from, shared
    only: dict  # {"a"|"b": {"configs": [...], "models": [...], "cells": DataFrame}}
    both: dict  # {"configs": [...], "models": [...]}
    evidence: dict = field(default_factory=dict)

    def name(self, which: str) -> str:
        return self.a.name if which in ("A", "a") else self.b.name

    @property
    def winner(self) -> str | None:
        """The decided winner at equal bits, overall (a side's name), or None."""
        return {"A better": self.a.name, "B better": self.b.name}.get(self.overall["verdict"])

    def text(self, verdict: str, delta: Interval | None = None) -> str:
        return verdict_text(verdict, self.a.name, self.b.name, delta, self.lower)


def difference_draws(comp: equalbits.Comparison) -> tuple[np.ndarray, np.ndarray | None]:
    """(R + 1, budgets) B − A at each budget, and (R + 1,) its mean over the budgets both cover."""
    delta = comp.score["B"] - comp.score["A"]
    covered = np.isfinite(delta[0])
    return delta, (delta[:, covered].mean(axis=1) if covered.any() else None)


def equal_bits(frame, metric, masks, scores, x_axis, n_boot, seed) -> tuple[equalbits.Comparison, dict]:
    """The two sides at equal bits: the Comparison and the overall {verdict, delta, n_budgets}."""
    comp = equalbits.compare(frame, metric, masks, scores, x_axis=x_axis, n_boot=n_boot, seed=seed)
    per_budget, mean = difference_draws(comp)
    delta = Interval.of(mean) if mean is not None else None
    same = mean is not None and not np.any(mean)
    n_budgets = int(np.isfinite(per_budget[0]).sum()) if per_budget.size else 0
    return comp, {"verdict": verdict_of(delta, comp.lower, same), "delta": delta, "n_budgets": n_budgets}


def budget_rows(comp: equalbits.Comparison) -> pd.DataFrame:
    per_budget, _ = difference_draws(comp)
    rows = []
    for i, bits in enumerate(comp.budgets):
        a, b = comp.score["A"][0, i], comp.score["B"][0, i]
        both = math.isfinite(a) and math.isfinite(b)
        delta = Interval.of(per_budget[:, i]) if both else None
        same = both and not np.any(per_budget[:, i])
        rows.append({"budget_bits": float(bits), "a": a, "b": b, "a_config": comp.best_label["A"][i],
                     "b_config": comp.best_label["B"][i], **interval_columns(delta),
                     "verdict": verdict_of(delta, comp.lower, same) if both else "not enough data"})
    return pd.DataFrame(rows, columns=["budget_bits", "a", "b", "a_config", "b_config", "delta", "delta_low",
                                       "delta_high", "verdict"])


def row_interval(row: dict) -> Interval | None:
    """A table row's delta, delta_low, delta_high back as an Interval (None where there is none)."""
    return Interval(row["delta"], row["delta_low"], row["delta_high"]) if math.isfinite(row["delta"]) else None


def interval_columns(delta: Interval | None) -> dict:
    if delta is None:
        return {"delta": np.nan, "delta_low": np.nan, "delta_high": np.nan}
    return {"delta": delta.value, "delta_low": delta.low, "delta_high": delta.high}


def matched_pairs(frame, picked_a, picked_b, scores, metric, lower, n_boot, seed) -> tuple[pd.DataFrame, dict]:
    """Configs both sides ran on the same model: B − A with its paired-bootstrap interval."""
    columns = ["model", "label", "bits", "run_a", "run_b", "a", "b", "delta", "delta_low", "delta_high", "verdict",
               "shared", "evidence"]
    pairs = picked_a.merge(picked_b, on=["model", "label"], suffixes=("_a", "_b"))
    if pairs.empty:
        return pd.DataFrame(columns=columns), {"n": 0, **{v: 0 for v in VERDICTS}, "delta": None}
    runs = pd.concat([picked_a, picked_b]).drop_duplicates("run_id")
    draws, evidence = run_draws(runs, scores, metric, n_boot, seed)
    rows, differences = [], []
    for p in pairs.itertuples(index=False):
        run_a, run_b = int(p.run_id_a), int(p.run_id_b)
        shared = int(p.source_a) == int(p.source_b)
        diff = draws[run_b][FULL] - draws[run_a][FULL]
        delta = None if shared else Interval.of(diff)
        if not shared:
            differences.append(diff)
        kinds = {evidence[run_a], evidence[run_b]}
        rows.append({
            "model": p.model, "label": p.label, "bits": p.bits_a, "run_a": run_a, "run_b": run_b,
            "a": p.value_a, "b": p.value_b, **interval_columns(delta), "verdict": verdict_of(delta, lower, shared),
            "shared": f"cached from run #{int(p.source_a)}" if shared else "",
            "evidence": DOCUMENTS if kinds == {DOCUMENTS} else "/".join(sorted(kinds)),
        })
    table = pd.DataFrame(rows, columns=columns).sort_values(["model", "bits", "label"], kind="mergesort")
    mean = Interval.of(np.mean(np.stack(differences), axis=0)) if differences else None
    counts = table["verdict"].value_counts().to_dict()
    return table.reset_index(drop=True), {"n": len(table), **{v: int(counts.get(v, 0)) for v in VERDICTS},
                                          "delta": mean}


def per_k_rows(frame, metric, masks, scores, x_axis, n_boot, seed, ks) -> pd.DataFrame:
    rows = []
    for k in ks:
        of_k = frame["bits"] == k
        _, found = equal_bits(frame[of_k], metric, {g: m & of_k for g, m in masks.items()}, scores, x_axis, n_boot, seed)
        rows.append({"k": int(k), "verdict": found["verdict"], **interval_columns(found["delta"]),
                     "n_budgets": found["n_budgets"]})
    return pd.DataFrame(rows, columns=["k", "verdict", "delta", "delta_low", "delta_high", "n_budgets"])


def run_table(frame: pd.DataFrame, in_a: pd.Series, in_b: pd.Series) -> pd.DataFrame:
    """Every run of either side, with the run it was cached from and whether the other side has
    the same measurement (its own run, or a copy of the same source)."""
    source = sources_of(frame)
    a_sources, b_sources = set(source[in_a]), set(source[in_b])
    side = np.where(in_a & in_b, "A and B", np.where(in_a, "A", "B"))
    shared = [(s == "A" and src in b_sources) or (s == "B" and src in a_sources) or s == "A and B"
              for s, src in zip(side, source)]
    cached = pd.to_numeric(frame["cached_from"], errors="coerce") if "cached_from" in frame else pd.Series(np.nan, index=frame.index)
    keep = [c for c in ("run_id", "sweep_id", "team", "model", "label", "bits", "value", "total_bits", "status")
            if c in frame]
    out = frame[keep].assign(side=side, cached_from=cached.astype("Int64"), shared=shared)
    return out[["side", *keep, "cached_from", "shared"]].sort_values("run_id", kind="mergesort").reset_index(drop=True)


def cells_only(picked: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    cells = picked.merge(other[["model", "label"]], on=["model", "label"], how="left", indicator=True)
    only = cells[cells["_merge"] == "left_only"]
    return only[["model", "label", "bits", "run_id", "value"]].sort_values(["model", "bits", "label"]).reset_index(drop=True)


def compare_sides(
    frame: pd.DataFrame, metric: str, a: Side, b: Side, scores: dict | None = None, x_axis: str = "total",
    n_boot: int | None = None, seed: int = 0,
) -> SideComparison:
    """Compare side A with side B over `frame` (rows_to_frame's runs of `metric`, both sides'
    runs; a run may belong to both), with `n_boot` bootstrap replicates (default equalbits.N_BOOT).
    See the module docstring for what each part means."""
    lower = lower_is_better(metric)
    n_boot = equalbits.N_BOOT if n_boot is None else n_boot
    frame = frame[frame["value"].notna()]
    in_a, in_b = a.mask(frame), b.mask(frame)
    frame = frame.assign(source=sources_of(frame))
    masks = {"A": in_a, "B": in_b}
    comp, overall = equal_bits(frame, metric, masks, scores, x_axis, n_boot, seed)
    picked_a, picked_b = first_run_per_config(frame[in_a]), first_run_per_config(frame[in_b])
    pairs, matched = matched_pairs(frame, picked_a, picked_b, scores, metric, lower, n_boot, seed)
    ks = sorted(set(frame.loc[in_a, "bits"].dropna()) & set(frame.loc[in_b, "bits"].dropna()))
    per_k = per_k_rows(frame, metric, masks, scores, x_axis, n_boot, seed, ks)

    def names(column, mine, theirs):
        return sorted(set(frame.loc[mine, column].dropna()) - set(frame.loc[theirs, column].dropna()), key=str)

    only = {
        "a": {"configs": names("label", in_a, in_b), "models": names("model", in_a, in_b),
              "cells": cells_only(picked_a, picked_b)},
        "b": {"configs": names("label", in_b, in_a), "models": names("model", in_b, in_a),
              "cells": cells_only(picked_b, picked_a)},
    }
    both = {column: sorted(set(frame.loc[in_a, c].dropna()) & set(frame.loc[in_b, c].dropna()), key=str)
            for column, c in (("configs", "label"), ("models", "model"))}
    return SideComparison(
        metric=metric, lower=lower, x_axis=x_axis, a=a, b=b, overall=overall, per_k=per_k,
        budgets=budget_rows(comp), pairs=pairs, matched=matched, runs=run_table(frame, in_a, in_b), only=only,
        both=both, evidence=comp.evidence,
    )

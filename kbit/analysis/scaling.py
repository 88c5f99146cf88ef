"""Scaling laws beside the measured points: for each group (e.g. each k), score = a + b * log2(bits)
fitted by least squares to the group's best config on each model size; its leave-one-size-out
prediction error; and the best group predicted at budgets between and just beyond the measured
sizes, decided only when the predicted margin exceeds twice the combined prediction error.

A straight line in log bits is the simplest law that fits every metric here (accuracy and bits per
byte alike) over a decade of sizes; it is not meant for extrapolation far beyond the data, so
predictions stop at BEYOND times the largest measured budget and say which are extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kbit.analysis.equalbits import x_bits
from kbit.analysis.metrics import lower_is_better

BEYOND = 2.0
N_PREDICTIONS = 10


@dataclass(frozen=True)
class Fit:
    """score = a + b * log2(bits) over `n_sizes` model sizes spanning bits low..high."""

    group: str
    a: float
    b: float
    n_sizes: int
    loo_error: float  # root mean square of leave-one-size-out prediction errors; NaN under 3 sizes
    low: float
    high: float

    def predict(self, bits) -> np.ndarray:
        return self.a + self.b * np.log2(np.asarray(bits, dtype=float))


def line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares line y = a + b x."""
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def leave_one_out(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3:
        return float("nan")
    errors = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        a, b = line(x[keep], y[keep])
        errors.append(a + b * x[i] - y[i])
    return float(np.sqrt(np.mean(np.square(errors))))


def best_points(frame: pd.DataFrame, mask: pd.Series, lower: bool, x_axis: str) -> pd.DataFrame:
    """The group's best config on each model size: columns model, x (bits), value."""
    runs = frame[mask & frame["value"].notna() & (frame["total_bits"] > 0)]
    runs = runs.assign(x=x_bits(runs, x_axis))
    runs = runs[runs["x"] > 0].sort_values(["value", "run_id"], ascending=[lower, True], kind="mergesort")
    return runs.drop_duplicates("model")[["model", "x", "value"]].sort_values("x")


def fit_groups(frame: pd.DataFrame, metric: str, groups: dict[str, pd.Series], x_axis: str = "total") -> dict[str, Fit]:
    """A fit per group with at least two model sizes."""
    lower = lower_is_better(metric)
    fits = {}
    for name, mask in groups.items():
        points = best_points(frame, mask.reindex(frame.index, fill_value=False), lower, x_axis)
        if len(points) < 2:
            continue
        x, y = np.log2(points["x"].to_numpy(dtype=float)), points["value"].to_numpy(dtype=float)
        a, b = line(x, y)
        fits[name] = Fit(name, a, b, len(points), leave_one_out(x, y), float(points["x"].min()), float(points["x"].max()))
    return fits


def predictions(fits: dict[str, Fit], lower: bool, n: int = N_PREDICTIONS, beyond: float = BEYOND) -> pd.DataFrame:
    """Predicted score of every group at budgets from the smallest measured to `beyond` times the
    largest, the predicted winner, its margin over the runner-up and the combined error
    (sqrt of the two leave-one-out errors squared); `extrapolated` where either lies outside its data."""
    usable = {g: f for g, f in fits.items() if np.isfinite(f.loo_error)}
    columns = ["budget_bits", *usable, "winner", "runner_up", "margin", "error", "decided", "extrapolated"]
    if len(usable) < 2:
        return pd.DataFrame(columns=columns)
    low = min(f.low for f in usable.values())
    high = max(f.high for f in usable.values()) * beyond
    rows = []
    for budget in np.geomspace(low, high, n):
        predicted = {g: float(f.predict(budget)) for g, f in usable.items()}
        ranked = sorted(predicted, key=lambda g: predicted[g], reverse=not lower)
        winner, runner = ranked[0], ranked[1]
        margin = abs(predicted[winner] - predicted[runner])
        error = float(np.hypot(usable[winner].loo_error, usable[runner].loo_error))
        outside = any(not usable[g].low <= budget <= usable[g].high for g in (winner, runner))
        rows.append({"budget_bits": float(budget), **predicted, "winner": winner, "runner_up": runner,
                     "margin": margin, "error": error, "decided": margin > 2 * error, "extrapolated": outside})
    return pd.DataFrame(rows, columns=columns)

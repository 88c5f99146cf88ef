"""Parallel curves: which precision wins over a family's whole range of bits, in one fit.

The paper observes that the curves of different k are almost parallel in log bits. This fits
`score = g(log2 bits) + d_config` to a family's runs: `g` one shared curve, `d_config` one offset
per config (its lead or lag at equal bits, the same at every budget). A precision's offset is that
of its best config, chosen on one half of the documents and scored on the other (as `equalbits`
does), and the verdict on which k wins is about the offsets, with the bootstrap around the whole
fit (each replicate of `resample.run_draws` refitted). Unlike reading each curve at budgets, the
fit uses every point and never interpolates a chord between two model sizes: a curve that bends
between sizes is bent for every k at once, so the segment lengths of different k bias nothing.

`g` is a monotone quadratic spline: g' is piecewise linear on a few knots with non-negative
coefficients, so g rises with bits in the direction of better scores (more bits never score worse;
a shape that data on four to six model sizes can pin down, where an isotonic step function would
put the steps between one k's points and read its offset off a step). The fit is least squares; a
replicate whose unconstrained fit is not monotone is refitted with non-negative g' (NNLS).

Goodness of fit: the curves are not parallel when a k's residuals drift along its range. Each k's
drift is the slope of its residuals against log2 bits times the width of its range, with its
bootstrap interval; when some k's drift is decided and larger than the winner's margin the
offsets cannot say which k wins everywhere, and `parallel` is False: read the per-budget table.

The fit is also the family's scaling law: `predict` gives a k's fitted score, g + d_k, with its
interval, only inside the range of bits that k was measured on (a law fitted on four sizes says
nothing past them), and `versus` gives d_k - d_4, the lead of one k over another at every budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import nnls

from kbit.analysis.equalbits import Interval
from kbit.analysis.resample import FULL, HALF_A, HALF_B

MAX_KNOTS = 4
GRID = 512
CHUNK = 50  # replicates fitted at once: 12,100 points x 3 x 50 columns is 15 MB of float64 (100: near 1 GB in all)


@dataclass
class ParallelFit:
    """Offsets per group (goodness units: positive is better, whatever the metric's direction)."""

    offsets: dict[str, np.ndarray]  # group -> (R + 1,) cross-fitted offset, relative to the best group
    labels: dict[str, str]  # group -> its best config on all documents
    winner: str
    margin: Interval  # the winner's offset over the best other group's
    drift: dict[str, Interval]  # group -> how far its residuals drift across its range
    parallel: bool
    n_points: int
    rms_residual: float
    lower: bool = False
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # group -> its lowest, highest bits
    top: np.ndarray | None = None  # (R + 1,) the leader's absolute offset (offsets are relative to it)
    # g, cross-fitted: the slope basis's span (lo, hi log2 bits, knots) and its (knots, R + 1) coefficients
    basis: tuple[float, float, int] = (0.0, 1.0, 2)
    coefficients: np.ndarray | None = None

    def offset(self, group: str) -> Interval:
        return Interval.of(self.offsets[group])

    def shown(self, group: str) -> Interval:
        """What a table shows for a group: the leader's lead over the next, else its gap behind the leader."""
        return self.margin if group == self.winner else self.offset(group)

    def versus(self, group: str, reference: str) -> Interval | None:
        """d_group - d_reference (goodness units) with its interval: how far `group` leads `reference`
        at every budget if the curves are parallel; None when either has no offset."""
        if group not in self.offsets or reference not in self.offsets:
            return None
        return Interval.of(self.offsets[group] - self.offsets[reference])

    def predict(self, group: str, bits: np.ndarray) -> np.ndarray:
        """(R + 1, len(bits)) `group`'s fitted score in the metric's units (g + its offset), NaN at
        budgets outside the bits it was measured on."""
        bits = np.asarray(bits, dtype=float)
        lo, hi = self.ranges[group]
        inside = (bits >= lo * (1 - 1e-9)) & (bits <= hi * (1 + 1e-9))
        shared = slope_basis(*self.basis)(np.log2(bits)) @ self.coefficients  # (len(bits), R + 1)
        good = shared.T + (self.offsets[group] + self.top)[:, None]
        return np.where(inside[None, :], -good if self.lower else good, np.nan)


def slope_basis(lo: float, hi: float, n_knots: int):
    """x -> (points, n_knots) integrals of hat functions on knots evenly spaced over [lo, hi]: g =
    basis @ c with c >= 0 is a monotone (non-decreasing) quadratic spline, zero at lo."""
    knots = np.linspace(lo, hi, n_knots)
    grid = np.linspace(lo, hi, GRID)
    hats = np.stack([np.interp(grid, knots, np.eye(n_knots)[j]) for j in range(n_knots)], axis=1)
    steps = np.diff(grid)[:, None] * (hats[1:] + hats[:-1]) / 2
    integrals = np.vstack([np.zeros((1, n_knots)), np.cumsum(steps, axis=0)])

    def basis(x: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(x, grid, integrals[:, j]) for j in range(n_knots)], axis=1)

    return basis


def indicator(index: np.ndarray, n_rows: int, weights: np.ndarray | None = None) -> sparse.csr_matrix:
    """(n_rows, points) sparse matrix with weights[p] (default 1) at (index[p], p): sums by row."""
    values = np.ones(len(index)) if weights is None else weights
    return sparse.csr_matrix((values, (index, np.arange(len(index)))), shape=(n_rows, len(index)))


def gather_plan(arrays: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(table, rows, positions)] with arrays[positions[k]] == table[rows[k]]: the runs' draws are
    mostly rows of one array per model (resample.document_draws), so a chunk of every point's
    draws is read with one indexing per model, not 12,100 slices; other arrays come one by one."""
    by_base: dict[int, tuple[np.ndarray, list, list]] = {}
    plan = []
    for position, a in enumerate(arrays):
        base = a.base
        if (isinstance(base, np.ndarray) and base.ndim == a.ndim + 1 and base.shape[1:] == a.shape
                and base.flags.c_contiguous and a.flags.c_contiguous):
            offset = a.__array_interface__["data"][0] - base.__array_interface__["data"][0]
            row, rest = divmod(offset, base.strides[0])
            if rest == 0 and 0 <= row < len(base):
                entry = by_base.setdefault(id(base), (base, [], []))
                entry[1].append(row)
                entry[2].append(position)
                continue
        plan.append((a[None], np.array([0]), np.array([position])))
    return plan + [(base, np.array(rows), np.array(positions)) for base, rows, positions in by_base.values()]


def gather(arrays: list[np.ndarray], part: slice, plan=None) -> np.ndarray:
    """(rows, columns in `part`, len(arrays)) float64: the arrays' columns `part`, side by side."""
    first = arrays[0]
    out = np.empty((first.shape[0], len(range(*part.indices(first.shape[1]))), len(arrays)))
    for table, rows, positions in plan if plan is not None else gather_plan(arrays):
        out[:, :, positions] = table[rows, :, part].transpose(1, 2, 0)
    return out


def fit_columns(slopes: np.ndarray, config_index: np.ndarray, y: np.ndarray):
    """Least squares of y (points, columns) on slopes @ c + offset[config], c >= 0: (c, offsets).

    The free offsets are profiled out by demeaning within each config; demeaning is a projection,
    so the demeaned design's normal equations need y itself, never a demeaned copy of it."""
    member = indicator(config_index, int(config_index.max()) + 1)
    counts = np.asarray(member.sum(axis=1)).ravel()

    def config_means(a):
        return (member @ a) / counts[:, None]

    design = slopes - config_means(slopes)[config_index]
    c = np.linalg.lstsq(design.T @ design, design.T @ y, rcond=None)[0]
    for column in np.flatnonzero((c < -1e-12).any(axis=0)):
        target = y[:, [column]] - config_means(y[:, [column]])[config_index]
        c[:, column] = nnls(design, target[:, 0])[0]
    return c, config_means(y) - config_means(slopes) @ c


def fit(configs: pd.DataFrame, draws: dict[int, np.ndarray], groups: dict[str, list[str]], lower: bool) -> ParallelFit | None:
    """`configs`: one run per (model, label) with columns run_id, label and x (bits on the axis);
    `groups`: group name -> its labels. None when fewer than two groups or sizes have points.
    The replicates are fitted CHUNK at a time, so memory does not grow with them."""
    configs = configs[configs["label"].isin({label for labels in groups.values() for label in labels})]
    if configs.empty or configs["x"].nunique() < 3 or sum(configs["label"].isin(ls).any() for ls in groups.values()) < 2:
        return None
    x = np.log2(configs["x"].to_numpy(dtype=float))
    labels = sorted(configs["label"].unique())
    index = configs["label"].map({label: i for i, label in enumerate(labels)}).to_numpy()
    run_draws = [draws[int(r)] for r in configs["run_id"]]
    rows, replicates = run_draws[0].shape
    n_knots = int(min(MAX_KNOTS, configs["model"].nunique()))
    span = (float(x.min()), float(x.max()), max(n_knots, 2))
    slopes = slope_basis(*span)(x)
    members = {name: np.flatnonzero(configs["label"].isin(ls).to_numpy()) for name, ls in groups.items()}
    drifting = [name for name, p in members.items() if len(np.unique(x[p])) >= 2]
    # a group's drift: the slope of its residuals on log2 bits, as one sparse product per chunk
    weights = np.zeros(len(x))
    for name in drifting:
        xs = x[members[name]] - x[members[name]].mean()
        weights[members[name]] = xs / (xs @ xs)
    group_of = np.full(len(x), len(drifting))
    for i, name in enumerate(drifting):
        group_of[members[name]] = i
    slope_of = indicator(group_of, len(drifting) + 1, weights)[: len(drifting)]
    by_config = slope_of @ indicator(index, len(labels)).T  # (groups, configs)

    per_label = np.full((len(labels), rows, replicates), np.nan, dtype=np.float32)  # like the draws
    halves = np.zeros((span[2], replicates))
    drift_slope = np.full((len(drifting), replicates), np.nan)
    rms = float("nan")
    plan = gather_plan(run_draws)
    for start in range(0, replicates, CHUNK):
        part = slice(start, min(start + CHUNK, replicates))
        good = gather(run_draws, part, plan)  # (3, n, points)
        if lower:
            np.negative(good, out=good)  # in place: each working copy of a chunk is 29 MB at 12,100 configs
        n = good.shape[1]
        y = good.reshape(rows * n, -1).T  # (points, 3 * n)
        usable = np.isfinite(y).all(axis=0)
        y[:, ~usable] = 0.0
        c, offsets = fit_columns(slopes, index, y)
        offsets[:, ~usable] = np.nan
        per_label[:, :, part] = offsets.reshape(len(labels), rows, n)
        by_row = c.reshape(-1, rows, n)
        # a group's offset is cross-fitted (config chosen on one half, its offset read on the other),
        # so its curve is too: the mean of the two halves' g
        halves[:, part] = (by_row[:, HALF_A, :] + by_row[:, HALF_B, :]) / 2
        full = slice(FULL * n, (FULL + 1) * n)
        # slope_of @ residual, the residual (y - slopes @ c - offsets[index]) never formed
        drift = slope_of @ y[:, full] - (slope_of @ slopes) @ c[:, full] - by_config @ offsets[:, full]
        drift[:, ~usable[full]] = np.nan
        drift_slope[:, part] = drift
        if start == 0 and usable[FULL * n]:
            first = y[:, FULL * n] - slopes @ c[:, FULL * n] - offsets[index, FULL * n]
            rms = float(np.sqrt(np.mean(first ** 2)))

    group_offsets, best = {}, {}
    for name, ls in groups.items():
        mine = [i for i, label in enumerate(labels) if label in ls]
        if not mine:
            continue
        values = per_label[mine]
        on_a = np.nan_to_num(values[:, HALF_A, :], nan=-np.inf).argmax(axis=0)
        on_b = np.nan_to_num(values[:, HALF_B, :], nan=-np.inf).argmax(axis=0)
        r = np.arange(replicates)
        group_offsets[name] = (values[on_a, HALF_B, r] + values[on_b, HALF_A, r]) / 2
        best[name] = labels[mine[int(np.nan_to_num(values[:, FULL, 0], nan=-np.inf).argmax())]]
    names = list(group_offsets)
    winner = max(names, key=lambda g: group_offsets[g][0])
    rival = np.max(np.stack([group_offsets[g] for g in names if g != winner]), axis=0)
    margin = Interval.of(group_offsets[winner] - rival)
    top = group_offsets[winner].copy()
    offsets_rel = {g: v - top for g, v in group_offsets.items()}

    drift = {name: Interval.of(drift_slope[i] * (x[members[name]].max() - x[members[name]].min()))
             for i, name in enumerate(drifting) if name in group_offsets}
    bent = [d for d in drift.values() if d.decided and abs(d.value) > abs(margin.value)]
    ranges = {name: (float(2 ** x[members[name]].min()), float(2 ** x[members[name]].max()))
              for name in group_offsets}
    return ParallelFit(offsets_rel, best, winner, margin, drift, parallel=not bent, n_points=len(configs),
                       rms_residual=rms, lower=lower, ranges=ranges, top=top, basis=span, coefficients=halves)

"""Training seeds: the runs of one model size trained with several seeds are replicates of one point.

A model id `<model>@seed<N>` (kbit.settings.split_seed; `kbit/demo/s1@seed2`) is `<model>` trained
with its N-th seed; the id without a suffix is seed 1. `points(frame)` renames every run's model to
the point it belongs to and keeps the seed in a `training_seed` column; `collapse` keeps one row
per (point, config), and `pooled` gives that row the draws of all its seeds together: replicate 0 is the plain
mean over the seeds, and each bootstrap replicate first resamples the seeds (with replacement, one
draw per size shared by every config of it, so a lucky seed is lucky for every config at once), then
averages those seeds' document draws of the same replicate (resample.py: the documents are resampled
alike for every run). So the intervals hold the training-seed noise as well as the documents'.

Runs without a seed suffix anywhere leave every function here a no-op: an analysis of one seed per
size is the analysis it always was, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kbit import settings
from kbit.analysis.resample import DRAW_DTYPE, _seed

SEED = "training_seed"  # the column points() adds


def points(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `model` the point each run measures (its id without the seed suffix) and a
    `training_seed` column; unchanged (no such column) when no model names a seed. Idempotent."""
    if SEED in frame or frame.empty or "model" not in frame:
        return frame
    split = {m: settings.split_seed(m) for m in frame["model"].dropna().unique()}
    if all(seed == 1 and base == m for m, (base, seed) in split.items()):
        return frame
    return frame.assign(model=frame["model"].map(lambda m: split[m][0] if m in split else m),
                        **{SEED: frame["model"].map(lambda m: split[m][1] if m in split else 1)})


def counts(frame: pd.DataFrame) -> dict[str, int]:
    """{point: number of seeds its runs were trained with}; {} for runs of one seed each."""
    if SEED not in frame or frame.empty:
        return {}
    return {str(m): int(n) for m, n in frame.groupby("model", sort=True)[SEED].nunique().items()}


def collapse(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (point, label) of `runs` (one run per (point, seed, label)): the row of its lowest
    run id, with the mean value and stderr over the seeds and `n_seeds`; `runs` itself without seeds."""
    if SEED not in runs or runs.empty:
        return runs
    ordered = runs.sort_values("run_id", kind="mergesort")
    grouped = ordered.groupby(["model", "label"], sort=False)
    first = ordered.drop_duplicates(["model", "label"]).set_index(["model", "label"])
    first["value"] = grouped["value"].mean()
    first["stderr"] = grouped["stderr"].mean()
    first["n_seeds"] = grouped[SEED].nunique()
    return first.reset_index()[[*runs.columns, "n_seeds"]]


def seed_weights(seeds: list[int], n_boot: int, seed: int, point: str) -> np.ndarray:
    """(n_boot + 1, len(seeds)) weights of a point's seeds: row 0 equal (the plain mean), then each
    replicate's resample of the seeds with replacement (multinomial counts / n), seeded by the point."""
    n = len(seeds)
    weights = np.full((n_boot + 1, n), 1.0 / n)
    if n_boot:
        rng = np.random.default_rng(_seed(seed, point, "seeds", *seeds))
        weights[1:] = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n
    return weights


def pooled(runs: pd.DataFrame, draws: dict[int, np.ndarray], evidence: dict[int, str], n_boot: int,
           seed: int) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """`draws` and `evidence` of `runs` (one run per (point, seed, label), resample.run_draws) with
    each (point, label) of several seeds under its `collapse` row's run id, its seeds pooled (see
    the module docstring). A config missing some of its point's seeds averages those it has, with
    the weights the resample gave them."""
    if SEED not in runs or runs.empty:
        return draws, evidence
    out_draws: dict[int, np.ndarray] = {}
    out_evidence: dict[int, str] = {}
    for point, of_point in runs.groupby("model", sort=True):
        seeds = sorted(int(s) for s in of_point[SEED].unique())
        weights = seed_weights(seeds, n_boot, seed, str(point)) if len(seeds) > 1 else None
        column = {s: i for i, s in enumerate(seeds)}
        for _, config in of_point.sort_values("run_id", kind="mergesort").groupby("label", sort=False):
            ids = [int(r) for r in config["run_id"]]
            if weights is None or len(ids) == 1:
                out_draws[ids[0]], out_evidence[ids[0]] = draws[ids[0]], evidence[ids[0]]
                continue
            w = weights[:, [column[int(s)] for s in config[SEED]]]
            total = w.sum(axis=1, keepdims=True)
            w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / w.shape[1])
            stacked = np.stack([draws[r] for r in ids]).astype(float)  # (seeds, 3, R + 1)
            out_draws[ids[0]] = np.einsum("srj,js->rj", stacked, w).astype(DRAW_DTYPE)
            out_evidence[ids[0]] = evidence[ids[0]]
    return out_draws, out_evidence

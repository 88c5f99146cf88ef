"""The frontier computation on hand-made data: averaging, best config per cell, Pareto frontier,
best precision per budget, thinning."""

import numpy as np
import pandas as pd
import pytest

from kbit.analysis import frontier as F


def row(run_id, model, bits, value, total_bits, dtype="nf", blocksize=64, label=None, **extra):
    return {
        "run_id": run_id, "sweep_id": 1, "sweep": "s", "team": "t", "model": model, "family": "f",
        "n_params": 1e6, "bits": bits, "dtype": dtype, "blocksize": blocksize, "exponent_bits": None,
        "outlier_fraction": 0.0, "label": label or f"{dtype}{bits}-b{blocksize}", "bits_per_param": bits,
        "total_bits": total_bits, "value": value, "stderr": 0.01, **extra,
    }


def points_frame(pairs):
    """Points with given (total_bits, value), one model each, for pareto_mask."""
    return pd.DataFrame({"total_bits": [b for b, _ in pairs], "value": [v for _, v in pairs],
                         "run_id": range(1, len(pairs) + 1)})


def test_pareto_mask_excludes_dominated_points():
    pts = points_frame([(1, 0.5), (2, 0.4), (2, 0.6), (3, 0.6), (4, 0.7), (5, 0.65)])
    assert F.pareto_mask(pts, lower=False).tolist() == [True, False, True, False, True, False]


def test_pareto_mask_lower_is_better_and_ties():
    pts = points_frame([(1, 30.0), (2, 31.0), (2, 20.0), (3, 20.0), (4, 10.0)])
    assert F.pareto_mask(pts, lower=True).tolist() == [True, False, True, False, True]
    ties = points_frame([(1, 0.5), (1, 0.5)])
    assert F.pareto_mask(ties, lower=False).tolist() == [True, False]


def test_pareto_mask_is_per_group():
    pts = points_frame([(1, 0.9), (2, 0.5), (1, 0.4), (2, 0.6)]).assign(panel=["a", "a", "b", "b"])
    assert F.pareto_mask(pts, lower=False, by="panel").tolist() == [True, False, True, True]


def test_chart_points_averages_repeats_and_keeps_best_config_per_k_and_model():
    rows = [
        row(1, "m1", 4, 0.40, 4.25e6), row(2, "m1", 4, 0.60, 4.25e6),          # same config twice -> 0.5
        row(3, "m1", 4, 0.45, 4.06e6, blocksize=256),                            # worse 4-bit config of m1
        row(4, "m1", 3, 0.30, 3.25e6),
        row(5, "m2", 4, 0.70, 17e6), row(6, "m2", 3, 0.72, 13e6),
        row(7, "m1", 4, np.nan, 4e6),                                            # no metric value: left out
        row(8, "m2", 8, 0.71, None),                                             # no bit report: left out
    ]
    pts = F.chart_points(F.rows_to_frame(rows), "bits", [], lower=False)
    got = {(r.model, r.bits): (round(r.value, 6), r.n_runs, r.n_configs, r.label) for r in pts.itertuples()}
    assert got == {
        ("m1", 3): (0.30, 1, 1, "nf3-b64"), ("m1", 4): (0.50, 2, 2, "nf4-b64"),
        ("m2", 3): (0.72, 1, 1, "nf3-b64"), ("m2", 4): (0.70, 1, 1, "nf4-b64"),
    }
    frontier = set(pts.loc[pts["on_frontier"], "run_id"])
    # m2's 4-bit (17e6 bits, 0.70) is dominated by its 3-bit (13e6 bits, 0.72).
    assert frontier == {4, 1, 6}
    assert (pts["panel"] == "").all()


def test_chart_points_lower_is_better_picks_smallest():
    rows = [row(1, "m", 4, 12.0, 4e6, label="a"), row(2, "m", 4, 10.0, 4.1e6, label="b")]
    pts = F.chart_points(F.rows_to_frame(rows), "bits", [], lower=True)
    assert pts["label"].tolist() == ["b"] and pts["value"].tolist() == [10.0]


def test_facets_make_panels_and_baseline_joins_every_dtype_panel():
    rows = [
        row(1, "m", 4, 0.5, 4.25e6, dtype="nf"), row(2, "m", 4, 0.4, 4.25e6, dtype="int"),
        row(3, "m", 16, 0.55, 16e6, dtype="none", blocksize=None, label="16bit"),
    ]
    pts = F.chart_points(F.rows_to_frame(rows), "bits", ["dtype", "block"], lower=False)
    panels = sorted(pts["panel"].unique())
    assert panels == ["dtype=int · b64", "dtype=nf · b64"]
    assert sorted(pts.loc[pts["bits"] == 16, "panel"]) == panels  # the 16-bit run is in both panels
    frame = F.rows_to_frame(rows)
    assert frame.loc[frame["bits"] == 16, "block"].item() == F.PER_TENSOR


def test_thin_keeps_frontier_and_bounds_size():
    rng = np.random.default_rng(0)
    n = 6000
    pts = pd.DataFrame({
        "panel": "", "bits": rng.choice([3, 4, 8], n), "model": [f"m{i}" for i in range(n)],
        "total_bits": 10 ** rng.uniform(6, 9, n), "value": rng.uniform(0, 1, n), "run_id": range(n),
    })
    pts["on_frontier"] = F.pareto_mask(pts, lower=False)
    thin = F.thin(pts, "bits", lower=False, max_points=600)
    assert len(thin) <= 600 + pts["on_frontier"].sum()
    assert set(pts.loc[pts["on_frontier"], "run_id"]) <= set(thin["run_id"])
    assert F.thin(pts.head(10), "bits", lower=False) is not None and len(F.thin(pts.head(10), "bits", False)) == 10


@pytest.mark.parametrize("metric, lower", [("acc", False), ("perplexity", True), ("bits_per_byte", True),
                                           ("word_perplexity", True), ("acc_norm", False)])
def test_lower_is_better(metric, lower):
    assert F.lower_is_better(metric) is lower


def test_empty_rows_give_empty_points():
    pts = F.chart_points(F.rows_to_frame([]), "bits", ["dtype"], lower=False)
    assert pts.empty and {"panel", "on_frontier"} <= set(pts.columns)

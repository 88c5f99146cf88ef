"""The parallel-curves model: a shared monotone curve plus one offset per config, its bootstrap,
and the goodness-of-fit that says when the curves are not parallel."""

import numpy as np
import pandas as pd
import pytest

from kbit.analysis import parallel
from kbit.analysis.resample import stderr_draws

SIZES = np.array([1e5, 4e5, 1.6e6, 6.4e6])  # parameters of four model sizes


def family(offsets: dict[int, float], tilt: dict[int, float] | None = None, noise: float = 0.002, curve=np.sqrt):
    """Runs of k-bit configs (one per k) on four sizes: score = curve(log2 bits) + offset[k] (+ a
    tilt per k that makes its curve steeper), each known with `noise` as its stderr."""
    rows, draws = [], {}
    for k, offset in offsets.items():
        for i, n in enumerate(SIZES):
            bits = n * (k + 0.25)
            x = np.log2(bits)
            value = curve(x) + offset + (tilt or {}).get(k, 0.0) * (x - 20)
            run = len(rows) + 1
            rows.append({"run_id": run, "model": f"s{i}", "label": f"nf{k}", "bits": k, "x": bits, "value": value})
            draws[run] = stderr_draws(value, noise, 400, seed=run)
    return pd.DataFrame(rows), draws


def groups(frame):
    return {f"{k}-bit": [f"nf{k}"] for k in sorted(frame["bits"].unique())}


def test_offsets_are_recovered_on_a_curved_shared_curve():
    frame, draws = family({3: -0.05, 4: 0.0, 8: -0.2})
    fit = parallel.fit(frame, draws, groups(frame), lower=False)
    assert fit.winner == "4-bit" and fit.margin.decided and fit.margin.value == pytest.approx(0.05, abs=0.01)
    assert fit.offset("8-bit").value == pytest.approx(-0.2, abs=0.01) and fit.offset("8-bit").high < 0
    assert fit.parallel and fit.rms_residual < 0.01


def test_lower_is_better_metrics_fit_the_same_way():
    frame, draws = family({3: 0.05, 4: 0.0}, curve=lambda x: -np.sqrt(x))
    fit = parallel.fit(frame, draws, groups(frame), lower=True)
    assert fit.winner == "4-bit" and fit.offset("3-bit").value == pytest.approx(-0.05, abs=0.01)


def test_tied_offsets_decide_nothing():
    frame, draws = family({3: 0.0, 4: 0.0}, noise=0.01)
    fit = parallel.fit(frame, draws, groups(frame), lower=False)
    assert not fit.margin.decided


def test_curves_that_cross_are_not_parallel():
    """3-bit steeper than 4-bit by 0.03 per doubling: it loses at few bits and wins at many."""
    frame, draws = family({3: 0.0, 4: 0.0}, tilt={3: 0.03})
    fit = parallel.fit(frame, draws, groups(frame), lower=False)
    assert not fit.parallel and fit.drift["3-bit"].decided


def test_too_few_sizes_give_no_fit():
    frame, draws = family({3: 0.0, 4: 0.0})
    one_size = frame[frame["model"] == "s0"]
    assert parallel.fit(one_size, draws, groups(frame), lower=False) is None


def test_predictions_follow_the_fit_inside_each_k_range_only():
    frame, draws = family({3: -0.05, 4: 0.0})
    fit = parallel.fit(frame, draws, groups(frame), lower=False)
    low, high = fit.ranges["3-bit"]
    assert low == pytest.approx(SIZES[0] * 3.25) and high == pytest.approx(SIZES[-1] * 3.25)
    inside = np.geomspace(low, high, 5)
    fitted = fit.predict("3-bit", np.concatenate([[low / 2], inside, [high * 2]]))
    assert np.isnan(fitted[:, 0]).all() and np.isnan(fitted[:, -1]).all()  # never past the measured sizes
    assert fitted[0, 1:-1] == pytest.approx(np.sqrt(np.log2(inside)) - 0.05, abs=0.01)
    assert np.isfinite(fitted[1:, 1:-1]).all()  # every replicate gives one
    lead = fit.versus("3-bit", "4-bit")
    assert lead.value == pytest.approx(-0.05, abs=0.01) and lead.high < 0


def test_predictions_of_a_lower_is_better_metric_are_in_its_own_units():
    frame, draws = family({3: 0.05, 4: 0.0}, curve=lambda x: -np.sqrt(x))
    fit = parallel.fit(frame, draws, groups(frame), lower=True)
    low, high = fit.ranges["4-bit"]
    middle = np.sqrt(low * high)
    assert fit.predict("4-bit", np.array([middle]))[0, 0] == pytest.approx(-np.sqrt(np.log2(middle)), abs=0.01)


def test_gather_reads_rows_of_shared_tables_and_lone_arrays_in_the_callers_order():
    rng = np.random.default_rng(0)
    model_a, model_b = rng.random((5, 3, 40), dtype=np.float32), rng.random((4, 3, 40), dtype=np.float32)
    lone = rng.random((3, 40), dtype=np.float32)  # e.g. seeds pooled into a new array
    arrays = [model_a[3], model_b[0], lone, model_a[0], model_b[3], model_a[4], model_a[3][::-1]]
    plan = parallel.gather_plan(arrays)
    assert sum(len(positions) for _, _, positions in plan) == len(arrays)
    assert len(plan) == 4  # two tables, the lone array, and a reversed view that is no row of its table
    for part in (slice(0, 25), slice(25, 40)):
        expected = np.stack([a[:, part] for a in arrays], axis=-1).astype(float)
        got = parallel.gather(arrays, part, plan)
        assert got.dtype == np.float64 and got.flags.c_contiguous and np.array_equal(got, expected)

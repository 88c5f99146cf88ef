"""Training seeds as replicates: the seeds of one size are one point at their mean, the bootstrap
resamples them (so seeds that disagree widen the intervals, and identical seeds change nothing), and
runs of one seed per size are analysed exactly as before."""

import numpy as np
import pytest

from kbit.analysis import findings, seeds
from kbit.analysis.equalbits import draws_of, one_run_per_config
from kbit.analysis.resample import FULL
from tests.analysis.synthetic import MODELS, Runs

DOCS = 400


def seeded_runs(shift: dict[int, float], n_seeds: int = 3) -> Runs:
    """Every size with `n_seeds` seeds of nf3 and nf4 (4-bit 0.02 ahead at equal bits), scored on
    DOCS documents; seed s's 4-bit runs score `shift[s]` more. Seeds read the same uniform draws, so
    seeds with the same shift have the very same per-document scores."""
    runs, rng = Runs(), np.random.default_rng(7)
    for model, n in MODELS.items():
        uniform = {k: rng.random(DOCS) for k in (3, 4)}
        for seed in range(1, n_seeds + 1):
            name = model if seed == 1 else f"{model}@seed{seed}"
            for k in (3, 4):
                value = 0.3 + 0.05 * np.log2(n * k / 1e6) + (0.02 + shift.get(seed, 0.0) if k == 4 else 0.0)
                runs.add(name, k, value, k + 0.25, docs=DOCS, outcomes=(uniform[k] < value).astype(float))
    return runs


def four_bit_margin(runs: Runs):
    return findings(runs.frame(), "t/acc", runs.scores, n_boot=400).finding("four_bit_optimal").margin


def test_the_seeds_of_a_size_are_one_point_at_their_mean():
    runs = seeded_runs({2: 0.06, 3: -0.03})
    frame = runs.frame()
    points = one_run_per_config(frame)
    assert sorted(points["model"]) == sorted(m for m in MODELS for _ in (3, 4)) and set(points["n_seeds"]) == {3}
    drawn, evidence = draws_of(frame, "t/acc", runs.scores, n_boot=200)
    assert set(drawn) == {int(r) for r in points["run_id"]} and set(evidence.values()) == {"documents"}
    by_point = seeds.points(frame).groupby(["model", "label"])["value"].mean()
    for _, row in points.iterrows():
        assert drawn[int(row["run_id"])][FULL, 0] == pytest.approx(by_point[(row["model"], row["label"])], abs=1e-6)
    found = findings(frame, "t/acc", runs.scores, n_boot=200)
    assert found.seeds == dict.fromkeys(MODELS, 3)
    assert found.models == [(n, m) for m, n in MODELS.items()]  # sizes, not seeds
    assert found.n_runs == len(frame)


def test_seeds_that_disagree_widen_the_intervals_and_identical_seeds_change_nothing():
    one_seed = four_bit_margin(seeded_runs({}, n_seeds=1))
    identical = four_bit_margin(seeded_runs({}))
    assert (identical.value, identical.low, identical.high) == pytest.approx((one_seed.value, one_seed.low, one_seed.high), abs=1e-6)
    disagreeing = four_bit_margin(seeded_runs({2: 0.12, 3: -0.12}))  # about 1.6x as wide
    assert disagreeing.high - disagreeing.low > 1.4 * (one_seed.high - one_seed.low)
    assert disagreeing.low < one_seed.low


def test_one_seed_per_size_is_analysed_as_it_always_was():
    runs = seeded_runs({}, n_seeds=1)
    frame = runs.frame()
    assert seeds.points(frame) is frame and "n_seeds" not in one_run_per_config(frame)
    drawn = draws_of(frame, "t/acc", runs.scores, n_boot=50)
    assert seeds.pooled(frame, *drawn, n_boot=50, seed=0) == drawn
    assert findings(frame, "t/acc", runs.scores, n_boot=50).seeds == {}


def test_a_config_missing_a_seed_averages_the_seeds_it_has():
    runs = seeded_runs({2: 0.06, 3: -0.03})
    frame = runs.frame()
    frame = frame[~((frame["model"] == "m2@seed3") & (frame["bits"] == 4))]
    points = one_run_per_config(frame).set_index(["model", "label"])
    assert points.loc[("m2", "nf4-b64"), "n_seeds"] == 2 and points.loc[("m2", "nf3-b64"), "n_seeds"] == 3
    drawn, _ = draws_of(frame, "t/acc", runs.scores, n_boot=200)
    pooled = drawn[int(points.loc[("m2", "nf4-b64"), "run_id"])]
    assert np.isfinite(pooled).all()
    assert pooled[FULL, 0] == pytest.approx(points.loc[("m2", "nf4-b64"), "value"], abs=1e-6)

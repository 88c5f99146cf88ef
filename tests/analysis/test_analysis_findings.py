"""The paper's findings on synthetic runs with a known answer: the data-type grouping (nf apart),
block sizes at equal bits, 4-bit against every other k (on the parallel-curves offsets when the
curves are parallel), GPTQ against round-to-nearest and outliers against none."""

import numpy as np
import pytest

from kbit.analysis import findings
from tests.analysis.synthetic import MODELS, Runs

DTYPE_GAIN = {"nf": 0.03, "int": 0.02, "dynamic": 0.0, "quantile": 0.005, "fp": 0.01}


def grid_runs(dtype_gain=DTYPE_GAIN, small_block_gain=0.02, k_offset=None, stderr=0.001):
    """Score = 0.3 + 0.05 log2(k-bit Mbit, block scales not counted) + the data type's and the block
    size's gain + the k's offset: on one model a block's gain is all it changes."""
    k_offset = k_offset or {}
    runs = Runs()
    for model, n in MODELS.items():
        runs.add(model, 16, 0.3 + 0.05 * np.log2(n * 16 / 1e6), 16, stderr=stderr)
        for k in (3, 4, 5):
            for dtype, gain in dtype_gain.items():
                for block in (64, 1024):
                    bpp = k + 16 / block
                    value = 0.3 + 0.05 * np.log2(n * k / 1e6) + gain + k_offset.get(k, 0.0)
                    value += small_block_gain if block == 64 else 0.0
                    runs.add(model, k, value, bpp, dtype=dtype, blocksize=block, stderr=stderr)
    return runs


def test_dtype_finding_tests_each_of_the_papers_pairs_with_nf_and_k5_apart():
    found = findings(grid_runs().frame(), "t/acc", n_boot=200)
    dtype = found.finding("quantile_float_beat_int_dynamic")
    # quantile (+0.005) loses to int (+0.02) by 0.015: the closest of the four pairs, decided against
    assert dtype.verdict == "differs"
    assert dtype.margin.value == pytest.approx(-0.015, abs=1e-6)
    pairs = {r["name"]: r for r in dtype.rows if r["name"].startswith("k=3+4: ")}
    assert set(pairs) == {"k=3+4: quantile vs int", "k=3+4: quantile vs dynamic", "k=3+4: fp vs int", "k=3+4: fp vs dynamic"}
    assert pairs["k=3+4: fp vs dynamic"]["margin"].value == pytest.approx(0.01, abs=1e-6)
    assert any(r["name"].startswith("k=5: quantile vs int") for r in dtype.rows)  # shown, not counted
    nf_rows = [r for r in dtype.rows if r["name"].startswith("k=4: nf")]
    assert nf_rows[0]["verdict"] == "agrees" and nf_rows[0]["margin"].value == pytest.approx(0.01, abs=1e-6)
    both_good = findings(grid_runs(dict(DTYPE_GAIN, quantile=0.025, fp=0.03)).frame(), "t/acc", n_boot=200)
    assert both_good.finding("quantile_float_beat_int_dynamic").verdict == "agrees"


def test_one_good_type_does_not_carry_the_data_type_finding():
    """Best-of-two against best-of-two said 'agrees' when only quantile was good; each pair must hold."""
    only_quantile = findings(grid_runs(dict(DTYPE_GAIN, quantile=0.04, fp=0.0)).frame(), "t/acc", n_boot=200)
    assert only_quantile.finding("quantile_float_beat_int_dynamic").verdict == "differs"  # fp loses to int


def test_small_blocks_are_compared_at_equal_bits():
    """Block 64 stores 0.234 bits per parameter more than block 1024: at equal bits its curve sits
    0.05 * log2(4.25 / 4.016) = 0.004 lower at 4 bits, so a gain of 0.02 on the same model is a real
    win and a gain of 0.002 a loss."""
    assert findings(grid_runs().frame(), "t/acc", n_boot=200).finding("small_blocks").verdict == "agrees"
    small_gain = findings(grid_runs(small_block_gain=0.002).frame(), "t/acc", n_boot=200)
    assert small_gain.finding("small_blocks").verdict == "differs"


def test_four_bit_finding_and_noise():
    best4 = findings(grid_runs(k_offset={3: -0.05, 5: -0.02}).frame(), "t/acc", n_boot=200)
    four = best4.finding("four_bit_optimal")
    assert four.verdict == "agrees" and four.margin.low > 0
    assert (best4.budgets.dropna(subset=["winner"])["winner"] != "3-bit").all()
    noisy = findings(grid_runs(k_offset={3: -0.05, 5: -0.02}, stderr=0.2).frame(), "t/acc", n_boot=200)
    assert noisy.finding("four_bit_optimal").verdict == "undecided"
    assert not noisy.budgets["decided"].fillna(False).any()


def test_not_enough_data():
    runs = Runs()
    runs.add("m1", 4, 0.5, 4.0)
    found = findings(runs.frame(), "t/acc", n_boot=50)
    assert found.verdicts == ["not enough data"] * 5
    assert found.budgets.empty


def method_runs(gptq_gain: float, outlier_gain: float, stderr: float = 0.001) -> Runs:
    """Round-to-nearest on a straight line in log bits; GPTQ at the same bits `gptq_gain` higher;
    2% outlier columns kept at 16 bits (0.32 bits per parameter more) `outlier_gain` higher."""
    runs = Runs()
    for model, n in MODELS.items():
        runs.add(model, 16, 0.3 + 0.05 * np.log2(n * 16 / 1e6), 16, stderr=stderr)
        for k in (3, 4, 8):
            value = 0.3 + 0.05 * np.log2(n * k / 1e6)
            runs.add(model, k, value, k + 0.25, stderr=stderr)
            runs.add(model, k, value + gptq_gain, k + 0.25, method="gptq", stderr=stderr)
            runs.add(model, k, value + outlier_gain, k + 0.25 + 0.02 * 16, outlier_fraction=0.02, stderr=stderr)
    return runs


def test_gptq_is_compared_with_rtn_at_3_and_4_bits_and_other_k_do_not_count():
    found = findings(method_runs(gptq_gain=0.02, outlier_gain=0.0).frame(), "t/acc", n_boot=200)
    gptq = found.finding("gptq_beats_rtn")
    assert gptq.verdict == "agrees" and gptq.margin.value == pytest.approx(0.02, abs=1e-3)
    names = [r["name"] for r in gptq.rows]
    assert names == ["k=3: GPTQ vs RTN", "k=4: GPTQ vs RTN", "k=8: GPTQ vs RTN (does not count)"]
    worse = findings(method_runs(gptq_gain=-0.01, outlier_gain=0.0).frame(), "t/acc", n_boot=200)
    assert worse.finding("gptq_beats_rtn").verdict == "differs"
    assert findings(grid_runs().frame(), "t/acc", n_boot=50).finding("gptq_beats_rtn").verdict == "not enough data"


def test_outliers_pay_for_their_16_bit_columns():
    """2% outliers at 16 bits cost 0.32 bits per parameter: at equal bits that is 0.05 * log2(3.57 /
    3.25) = 0.0068 at 3 bits, so a gain of 0.02 on the same model helps and one of 0.003 does not."""
    helps = findings(method_runs(gptq_gain=0.0, outlier_gain=0.02).frame(), "t/acc", n_boot=200)
    assert helps.finding("outliers_help_low_bits").verdict == "agrees"
    small = findings(method_runs(gptq_gain=0.0, outlier_gain=0.003).frame(), "t/acc", n_boot=200)
    outliers = small.finding("outliers_help_low_bits")
    assert outliers.verdict == "differs" and outliers.margin.value < 0


def test_four_bit_is_judged_on_the_offsets_only_when_the_curves_are_parallel():
    parallel_runs = findings(grid_runs(k_offset={3: -0.05, 5: -0.02}).frame(), "t/acc", n_boot=200)
    assert parallel_runs.parallel.parallel and parallel_runs.finding("four_bit_optimal").basis == "offsets"
    crossing = Runs()
    for model, n in MODELS.items():  # 3-bit gains 0.04 per doubling of model size more than 4-bit: they cross
        for k, tilt in ((3, 0.04), (4, 0.0)):
            value = 0.3 + 0.05 * np.log2(n * k / 1e6) + tilt * (np.log2(n / 1e6) - 1.5)
            crossing.add(model, k, value, k + 0.25)
    found = findings(crossing.frame(), "t/acc", n_boot=200)
    assert not found.parallel.parallel and found.finding("four_bit_optimal").basis == "budgets"


def test_a_sweep_without_some_data_types_tests_the_pairs_it_has():
    """int and quantile only (no fp, no dynamic): the data-type finding is the one pair, not a crash."""
    found = findings(grid_runs({"int": 0.0, "quantile": 0.02}).frame(), "t/acc", n_boot=200)
    dtype = found.finding("quantile_float_beat_int_dynamic")
    assert [r["name"] for r in dtype.rows if r["name"].startswith("k=3+4")] == ["k=3+4: quantile vs int"]
    assert dtype.verdict == "agrees" and dtype.margin.value == pytest.approx(0.02, abs=1e-6)

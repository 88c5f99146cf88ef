"""Equal-bits comparison on synthetic data with a known answer: the old same-model error, noise,
no extrapolation, selection on one half of the documents, and the paired bootstrap by hand."""

import numpy as np
import pandas as pd
import pytest

from kbit.analysis import equalbits as E
from kbit.analysis import frontier as F
from kbit.analysis import resample as R
from tests.analysis.synthetic import MODELS, Runs


def by_bits(frame, *ks):
    return {f"{k}-bit": frame["bits"] == k for k in ks}


def scaling_runs(slope=0.1, offset3=0.02, **kw):
    """Score = a + slope * log2(total bits); 3-bit's curve sits `offset3` above 4-bit's at equal bits,
    but on any one model 4-bit (4.2 bits/param vs 3.2) scores higher."""
    runs = Runs()
    for model, n in MODELS.items():
        for k, bpp, offset in ((3, 3.2, offset3), (4, 4.2, 0.0)):
            runs.add(model, k, 0.2 + offset + slope * np.log2(n * bpp / 1e6), bpp, **kw)
    return runs


def test_three_bit_wins_at_equal_bits_where_four_bit_wins_on_every_model():
    runs = scaling_runs()
    frame = runs.frame()
    for model in MODELS:  # the premise: on each model 4-bit is better
        own = frame[frame["model"] == model].set_index("bits")["value"]
        assert own[4] > own[3]
    front = F.frontier_view(frame, "t/acc")
    assert set(front.loc[front["on_frontier"], "bits"]) == {3, 4}  # the point frontier mixes both
    comp = E.compare(frame, "t/acc", by_bits(frame, 3, 4), n_boot=200)
    table = comp.table.dropna(subset=["winner"])
    assert len(table) >= 5
    assert set(table["winner"]) == {"3-bit"}
    assert table["decided"].all()
    assert table["margin"].to_numpy() == pytest.approx(0.02, abs=1e-6)  # draws are kept in float32


def test_interpolation_never_extrapolates():
    runs = scaling_runs()
    frame = runs.frame()
    comp = E.compare(frame, "t/acc", by_bits(frame, 3, 4), n_boot=0)
    lo3, hi3 = 1e6 * 3.2, 8e6 * 3.2
    lo4, hi4 = 1e6 * 4.2, 8e6 * 4.2
    for budget, v3, v4 in zip(comp.table["budget_bits"], comp.table["3-bit"], comp.table["4-bit"]):
        assert np.isfinite(v3) == (lo3 * (1 - 1e-9) <= budget <= hi3 * (1 + 1e-9))
        assert np.isfinite(v4) == (lo4 * (1 - 1e-9) <= budget <= hi4 * (1 + 1e-9))
    assert comp.table["budget_bits"].min() >= lo4 * (1 - 1e-9) and comp.table["budget_bits"].max() <= hi3 * (1 + 1e-9)
    # between two measured sizes the score is linear in log2 bits: exactly the generating line here
    for budget, v3 in zip(comp.table["budget_bits"], comp.table["3-bit"]):
        assert v3 == pytest.approx(0.22 + 0.1 * np.log2(budget / 1e6))


def test_no_noise_known_is_never_decided():
    runs = scaling_runs(stderr=None)
    frame = runs.frame()
    comp = E.compare(frame, "t/acc", by_bits(frame, 3, 4), n_boot=100)
    assert not comp.table["decided"].any()
    assert comp.evidence == {R.NO_NOISE: 8}


def test_huge_noise_is_undecided():
    runs = Runs(seed=3)
    for model, n in MODELS.items():
        for k, bpp in ((3, 3.2), (4, 4.2)):
            runs.add(model, k, 0.5 + 0.01 * np.log2(n * bpp / 1e6), bpp, docs=40)
    frame = runs.frame()
    comp = E.compare(frame, "t/acc", by_bits(frame, 3, 4), runs.scores, n_boot=300)
    table = comp.table.dropna(subset=["winner"])
    assert len(table) and not table["decided"].any()
    assert (table["margin_low"] < 0).all() and (table["margin_high"] > 0).all()
    assert comp.evidence == {R.DOCUMENTS: 8}


def test_many_configs_do_not_win_by_selection():
    """Twenty 3-bit configs of equal true accuracy 0.58 against one 4-bit config of 0.60 at the same
    bits: the best of twenty on all documents beats 0.60 by luck; chosen on one half and scored on
    the other, 3-bit does not."""
    runs = Runs(seed=7)
    for model in ("m1", "m2", "m3"):
        runs.add(model, 4, 0.60, 4.0, docs=400)
        for i in range(20):
            runs.add(model, 3, 0.58, 4.0, docs=400, label=f"cfg{i}")
    frame = runs.frame()
    naive = frame[frame["bits"] == 3].groupby("model")["value"].max()
    four = frame[frame["bits"] == 4].set_index("model")["value"]
    assert (naive > four).sum() >= 2  # the winner's curse the split removes
    comp = E.compare(frame, "t/acc", by_bits(frame, 3, 4), runs.scores, n_boot=200, n_budgets=5)
    assert comp.table["3-bit"].mean() < comp.table["4-bit"].mean()
    assert not (comp.table["decided"] & (comp.table["winner"] == "3-bit")).any()


def test_document_draws_by_hand(monkeypatch):
    """Two configs of one model on four documents; replicate 1 counts documents (2, 0, 1, 1).
    Each half and the whole are weighted means by those counts, the same counts for both configs."""
    counts = np.array([[1.0, 1, 1, 1], [2, 0, 1, 1]])
    monkeypatch.setattr(R, "replicate_counts", lambda n, b, s: counts)
    monkeypatch.setattr(R, "halves", lambda ids, s: np.array([True, True, False, False]))
    scores = {
        1: {"t": {"doc_ids": np.array([0, 1, 2, 3]), "values": np.array([1.0, 0, 1, 1]), "weights": None}},
        2: {"t": {"doc_ids": np.array([3, 2, 1, 0]), "values": np.array([0.0, 1, 1, 0]), "weights": None}},
    }
    draws = R.document_draws([1, 2], scores, ["t"], n_boot=1, seed=0)
    # run 1 by doc id: 1,0,1,1; run 2 by doc id (reordered): 0,1,1,0
    assert draws[1][R.FULL].tolist() == [0.75, (2 + 0 + 1 + 1) / 4]
    assert draws[1][R.HALF_A].tolist() == [0.5, 1.0]
    assert draws[1][R.HALF_B].tolist() == [1.0, 1.0]
    assert draws[2][R.FULL].tolist() == [0.5, (0 + 0 + 1 + 0) / 4]
    assert draws[2][R.HALF_A].tolist() == [0.5, 0.0]


def test_every_model_size_draws_the_same_count_for_a_document():
    """Sizes share documents: a replicate's count of a document is the same for every run that
    scored it, also for a model that scored only some of them (and its half for every run that
    scored the same documents, in whatever order); the counts are a bootstrap (mean 1 per document)."""
    ids = np.arange(50)
    full = R.replicate_counts(ids, 400, seed=7)
    part = R.replicate_counts(ids[10:30], 400, seed=7)
    assert (full[0] == 1).all() and np.array_equal(full[:, 10:30], part)
    assert abs(full[1:].mean() - 1) < 0.02 and not np.array_equal(full[1], full[2])
    assert np.array_equal(R.halves(ids[::-1], 3), R.halves(ids, 3)[::-1]) and R.halves(ids, 3).sum() == 25
    scores = {run: {"t": {"doc_ids": ids if run == 1 else ids[::-1], "values": np.linspace(0, 1, 50), "weights": None}}
              for run in (1, 2)}
    small, large = (R.run_draws(pd.DataFrame({"run_id": [run], "model": [model], "value": [0.5], "stderr": [0.1]}),
                                scores, "t/acc", 50, seed=0)[0][run] for run, model in ((1, "s1"), (2, "s2")))
    # run 2 holds the values in reverse document order: the same resample weighs them the other way
    assert np.corrcoef(small[R.FULL, 1:], large[R.FULL, 1:])[0, 1] < -0.9


def test_weighted_documents_reproduce_a_ratio_metric():
    """Bits per byte: sum(bits) / sum(bytes) over the documents, lower is better."""
    scores = {1: {"t": {"doc_ids": np.array([0, 1, 2]), "values": np.array([10.0, 30, 20]), "weights": np.array([10.0, 20, 10])}}}
    draws = R.document_draws([1], scores, ["t"], n_boot=0, seed=0)
    assert draws[1][R.FULL, 0] == pytest.approx(60 / 40)


def test_paired_bootstrap_is_narrower_than_independent_errors():
    """Two configs that differ on few documents: the interval of their difference comes from those
    documents, far narrower than each score's own stderr would give."""
    runs = Runs(seed=1)
    base = (np.random.default_rng(0).random(400) < 0.6).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:12]] = 1.0  # 12 more right answers out of 400
    for model in ("m1", "m2"):
        a = runs.add(model, 3, 0.5, 4.0, docs=400)
        b = runs.add(model, 4, 0.5, 4.0, docs=400)
        runs.scores[a]["t"]["values"], runs.scores[b]["t"]["values"] = base, better
        runs.rows[a - 1]["value"], runs.rows[b - 1]["value"] = base.mean(), better.mean()
    frame = runs.frame()
    comp = E.compare(frame, "t/acc", by_bits(frame, 3, 4), runs.scores, n_boot=500, n_budgets=3)
    row = comp.table.iloc[0]
    assert row["winner"] == "4-bit" and row["decided"]
    assert row["margin"] == pytest.approx(0.03)
    independent = 1.96 * np.sqrt(2) * np.sqrt(0.6 * 0.4 / 400)  # about 0.068: would include zero
    assert row["margin_high"] - row["margin_low"] < independent


def test_quantized_axis_leaves_out_the_sixteen_bit_parts():
    runs = Runs()
    runs.add("m1", 4, 0.5, 4.0, n_quantized_share=0.5)
    frame = runs.frame()
    assert frame["total_bits"].iloc[0] == pytest.approx(0.5e6 * 4 + 0.5e6 * 16)
    assert E.x_bits(frame, "quantized").iloc[0] == pytest.approx(0.5e6 * 4)
    with pytest.raises(ValueError, match="x axis"):
        E.x_bits(frame, "params")


def test_a_curve_never_joins_two_families():
    """Family A's small model and family B's large one, same label: no curve, so no comparison."""
    runs = Runs()
    runs.add("m1", 3, 0.3, 3.25)
    runs.add("m1", 4, 0.4, 4.25)
    runs.add("m4", 3, 0.6, 3.25)
    runs.add("m4", 4, 0.7, 4.25)
    frame = runs.frame()
    frame.loc[frame["model"] == "m4", "family"] = "other"
    assert E.compare(frame, "t/acc", by_bits(frame, 3, 4), n_boot=10).table.empty
    frame["family"] = "same"
    assert not E.compare(frame, "t/acc", by_bits(frame, 3, 4), n_boot=10).table.empty

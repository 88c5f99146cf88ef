"""Two teams compared at equal bits (kbit.analysis.teams) on synthetic runs with a known answer:
the decided winner and its margin, shared (cached) runs never counted as agreement, every config
accounted for, and undecided inside the noise."""

import numpy as np
import pytest

from kbit.analysis.teams import VERDICTS, compare_sides, parse_sides, verdict_text
from tests.analysis.synthetic import MODELS, Runs

GAIN = 0.02


def two_teams(stderr=0.002, gain=GAIN, docs=0):
    """nlp: nf4, nf3, int4, nf8; vision: nf4 (+gain), nf3 cached from nlp's, fp4."""
    runs = Runs(seed=1)

    def add(team, model, k, value, dtype="nf", cached_from=None):
        run_id = runs.add(model, k, value, k + 0.25, dtype=dtype, stderr=stderr, docs=docs)
        runs.rows[-1].update(team=team, sweep_id=1 if team == "nlp" else 2, cached_from=cached_from)
        if cached_from is not None:  # a cache hit is its source's measurement, scores included
            runs.rows[-1].update(value=runs.rows[cached_from - 1]["value"], stderr=runs.rows[cached_from - 1]["stderr"])
            if cached_from in runs.scores:
                runs.scores[run_id] = runs.scores[cached_from]
        return run_id

    for model, n in MODELS.items():
        base = 0.45 + 0.05 * np.log2(n / 1e6)
        add("nlp", model, 4, base)
        add("vision", model, 4, base + gain)
        source = add("nlp", model, 3, base - 0.05)
        add("vision", model, 3, base - 0.05, cached_from=source)
        add("nlp", model, 4, base - 0.03, dtype="int")
        add("vision", model, 4, base - 0.01, dtype="fp")
        add("nlp", model, 8, base + 0.005)
    return runs


def compared(runs, metric="t/acc", n_boot=200):
    a, b = parse_sides("team:nlp,team:vision")
    return compare_sides(runs.frame(), metric, a, b, runs.scores, n_boot=n_boot)


def test_the_better_team_is_named_with_its_margin():
    c = compared(two_teams())
    assert c.overall["verdict"] == "B better" and c.winner == "vision"
    assert c.overall["delta"].low > 0
    per_k = dict(zip(c.per_k["k"], c.per_k["verdict"]))
    assert per_k == {3: "same runs", 4: "B better"}  # 3-bit: both sides' scores are the same cached runs
    k4 = c.per_k[c.per_k["k"] == 4].iloc[0]
    assert k4["delta"] == pytest.approx(GAIN, abs=1e-6) and k4["delta_low"] < GAIN < k4["delta_high"]
    assert set(c.budgets["verdict"]) <= set(VERDICTS)


def test_cached_runs_are_shared_never_agreement():
    c = compared(two_teams())
    shared = c.pairs[c.pairs["label"] == "nf3-b64"]
    assert len(shared) == len(MODELS) and set(shared["verdict"]) == {"same runs"}
    assert all(s.startswith("cached from run #") for s in shared["shared"])
    assert shared["delta"].isna().all()  # no difference is claimed for one run counted twice
    assert c.matched["same runs"] == len(MODELS) and c.matched["B better"] == len(MODELS)
    assert c.matched["delta"].value == pytest.approx(GAIN)  # the mean over pairs measured twice only
    cached = c.runs[c.runs["cached_from"].notna()]
    assert len(cached) == len(MODELS) and cached["shared"].all() and set(cached["side"]) == {"B"}


def test_every_config_and_model_is_accounted_for():
    runs = two_teams()
    runs.add("m4", 4, 0.9, 4.25, label="nf4-b64")  # a model only vision ran (MODELS has it; the row says so)
    runs.rows[-1].update(team="vision", model="m5", sweep_id=2, n_params=16e6, n_quantized=16e6, total_bits=16e6 * 4.25)
    c = compared(runs)
    assert c.only["a"]["configs"] == ["int4-b64", "nf8-b64"] and c.only["b"]["configs"] == ["fp4-b64"]
    assert c.only["a"]["models"] == [] and c.only["b"]["models"] == ["m5"]
    assert len(c.only["a"]["cells"]) == 2 * len(MODELS) and len(c.only["b"]["cells"]) == len(MODELS) + 1
    assert c.both == {"configs": ["nf3-b64", "nf4-b64"], "models": sorted(MODELS)}
    counted = len(c.pairs) * 2 + len(c.only["a"]["cells"]) + len(c.only["b"]["cells"])
    assert counted == len(runs.rows) == len(c.runs)


def test_inside_the_noise_it_is_undecided():
    c = compared(two_teams(stderr=0.05, gain=0.005))
    assert c.overall["verdict"] == "undecided" and c.winner is None
    assert "ahead" in verdict_text(c.overall["verdict"], "nlp", "vision", c.overall["delta"])


def test_paired_over_documents_and_lower_is_better():
    c = compared(two_teams(gain=0.08, docs=800), n_boot=100)
    assert c.evidence == {"documents": len(c.runs)}
    assert c.overall["verdict"] == "B better"
    shared = c.pairs[c.pairs["label"] == "nf3-b64"]
    assert set(shared["verdict"]) == {"same runs"}
    # The same numbers read as a loss: lower is better for bits per byte, so vision's higher values lose.
    assert compared(two_teams(), metric="t/bits_per_byte").overall["verdict"] == "A better"


@pytest.mark.parametrize("text", ["team:nlp", "nlp,vision", "team:nlp,team:nlp", "sweep:x,sweep:2", "group:a,team:b"])
def test_bad_sides_are_refused_with_the_spelling(text):
    with pytest.raises(ValueError, match="team:|sweep|two"):
        parse_sides(text)

"""Many verdicts at once: bootstrap p-values, Holm over the findings, a simultaneous band over budgets."""

import numpy as np
import pytest

from kbit.analysis import multiplicity as M
from kbit.analysis.findings import Finding, decide_together


def draws(observed, replicates):
    return np.concatenate([[observed], replicates])


def test_p_values_count_replicates_on_the_far_side_of_zero():
    rng = np.random.default_rng(0)
    assert M.p_positive(draws(1.0, rng.uniform(0.5, 1.5, 1000))) == 0.0
    assert M.p_positive(draws(0.1, np.r_[np.full(990, 0.2), np.full(10, -0.1)])) == pytest.approx(0.02)
    assert M.p_negative(draws(0.1, np.r_[np.full(990, 0.2), np.full(10, -0.1)])) == 1.0
    assert M.p_two_sided(draws(0.0, rng.normal(0, 1, 1000))) > 0.5
    assert M.p_positive(draws(0.3, np.full(1000, 0.3))) == 1.0  # no noise known: nothing is decided


def test_holm_by_hand():
    adjusted = M.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert M.holm({"only": 0.04}) == {"only": 0.04}


def finding(name, p):
    return Finding(name, name, "undecided", None, p=p, direction="agrees")


def test_findings_decided_one_by_one_are_not_all_decided_together():
    """Each at p < 0.05 alone, but three at once: Holm keeps the chance of any false verdict at 5%."""
    alone = decide_together([finding("x", 0.02), finding("y", 0.03), finding("z", 0.04)])
    assert [f.verdict for f in alone] == ["undecided"] * 3 and all(f.p == pytest.approx(0.06) for f in alone)
    strong = decide_together([finding("x", 0.001), finding("y", 0.02), finding("z", 0.04)])
    assert [f.verdict for f in strong] == ["agrees"] * 3
    empty = Finding("e", "e", "not enough data", None)
    assert decide_together([empty, finding("x", 0.01)])[0].verdict == "not enough data"


@pytest.mark.parametrize("shared", [True, False])
def test_the_band_holds_every_budget_at_once(shared):
    """Independent budgets need a wider pointwise level than 95% (about 1 - 0.05/10 for ten); budgets
    that move together need about 95%. Either way 95% of replicates stay inside all intervals."""
    rng = np.random.default_rng(1)
    reps = np.repeat(rng.normal(size=(2000, 1)), 10, axis=1) if shared else rng.normal(size=(2000, 10))
    table = np.vstack([np.zeros(10), reps])
    level = M.simultaneous_level(table)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail], axis=0)
    assert ((reps >= low) & (reps <= high)).all(axis=1).mean() >= 0.95
    assert level == pytest.approx(0.95, abs=0.003) if shared else 0.99 < level < 0.999

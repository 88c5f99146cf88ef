"""Model x task table (mean ± stderr) and the difference between two sweeps, on hand-made rows."""

import math

import pandas as pd

from kbit.dashboard import compare
from kbit.analysis import frontier as F


def results_frame():
    rows = []
    for team, model, label, lw, ch, status in (
        ("nlp", "m1", "nf4-b64", 0.40, 0.60, "done"), ("nlp", "m1", "nf4-b64", 0.50, 0.70, "done"),
        ("nlp", "m1", "16bit", 0.9, 0.9, "done"), ("cv", "m1", "nf4-b64", 0.30, None, "cached"),
        ("cv", "m2", "nf4-b64", 0.99, 0.99, "failed"),
    ):
        rows.append({"team": team, "model": model, "label": label, "status": status,
                     "kbit_lastword/acc": lw, "kbit_lastword/acc_stderr": 0.03,
                     "kbit_choice/acc": ch, "kbit_choice/acc_stderr": 0.04 if ch is not None else None,
                     "kbit_heldout/perplexity": 12.0, "kbit_heldout/perplexity_stderr": None})
    return pd.DataFrame(rows)


def test_task_table_mean_and_stderr_of_the_mean():
    results = results_frame()
    assert compare.metric_names(results) == ["acc", "perplexity"]
    assert compare.metric_tasks(results, "acc") == ["kbit_choice", "kbit_lastword"]
    long, pivot = compare.task_table(results, "acc", "nf4-b64", "team")
    got = {(r.team, r.model, r.task): (round(r.mean, 6), round(r.stderr, 6), r.runs) for r in long.itertuples()}
    assert got == {
        ("nlp", "m1", "kbit_lastword"): (0.45, round(math.sqrt(2 * 0.03**2) / 2, 6), 2),
        ("nlp", "m1", "kbit_choice"): (0.65, round(math.sqrt(2 * 0.04**2) / 2, 6), 2),
        ("cv", "m1", "kbit_lastword"): (0.30, 0.03, 1),  # failed m2 run excluded; missing choice value skipped
    }
    nlp = pivot[pivot["team"] == "nlp"].iloc[0]
    assert nlp["kbit_lastword"] == "0.4500 ± 0.0212"
    assert pd.isna(pivot[pivot["team"] == "cv"].iloc[0]["kbit_choice"])


def test_task_table_without_the_metric_is_empty():
    long, pivot = compare.task_table(results_frame(), "f1", "nf4-b64", "team")
    assert long.empty and pivot.empty


def frontier_frame(values):
    return F.rows_to_frame([
        {"run_id": i, "model": m, "label": lab, "bits": 4, "dtype": "nf", "blocksize": 64, "value": v,
         "total_bits": 4.25e6, "stderr": 0.01, "n_params": 1e6, "bits_per_param": 4.25, "family": "f"}
        for i, (m, lab, v) in enumerate(values)
    ])


def test_sweep_difference_pairs_configs_present_in_both():
    a = frontier_frame([("m1", "nf4", 0.50), ("m1", "nf4", 0.60), ("m2", "nf4", 0.70), ("m3", "nf4", 0.1)])
    b = frontier_frame([("m1", "nf4", 0.58), ("m2", "nf4", 0.65)])
    diff = compare.sweep_difference(a, b, lower=False)
    got = {r.model: (round(r.a, 6), round(r.b, 6), round(r.delta, 6), r.better) for r in diff.itertuples()}
    assert got == {"m1": (0.55, 0.58, 0.03, True), "m2": (0.70, 0.65, -0.05, False)}
    lower = compare.sweep_difference(a, b, lower=True)
    assert dict(zip(lower["model"], lower["better"])) == {"m1": False, "m2": True}
    assert compare.sweep_difference(a, frontier_frame([("zz", "nf4", 0.1)]), lower=False).empty

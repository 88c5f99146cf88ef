"""Model x task table (mean ± stderr) on hand-made rows. The comparison of two teams or sweeps: test_dashboard_teams.py."""

import math

import pandas as pd

from kbit.dashboard import compare


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

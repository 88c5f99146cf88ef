"""The RESULTS.md and JSON report: frontier, equal-bits winners with intervals and the paper's
verdicts come from the data (kbit.analysis), the text from kbit.cli.report."""

import json

import numpy as np
import pytest

from kbit.analysis import FINDINGS, VERDICTS, findings, rows_to_frame
from kbit.analysis.frontier import by_method
from kbit.cli.report import method_of, render_report, report_json
from tests.analysis.synthetic import MODELS, Runs


def run(model, n, bits, value, dtype="nf", blocksize=64):
    bpp = bits + (16 / blocksize if blocksize and bits < 16 else 0)
    run.counter += 1
    return {"run_id": run.counter, "model": model, "n_params": n, "bits": bits, "dtype": dtype, "blocksize": blocksize,
            "label": f"{dtype}{bits}-b{blocksize}", "total_bits": n * bpp, "value": value, "family": "f"}


run.counter = 0


def frontier_models(rows, metric="t/acc"):
    return [(r["model"], r["bits"]) for r in findings(rows_to_frame(rows), metric, n_boot=10).frontier.to_dict("records")]


def test_frontier_drops_dominated_runs_in_either_direction():
    a = run("m1", 1000, 4, 0.50)
    b = run("m1", 1000, 8, 0.49)        # more bits, worse: dominated
    c = run("m2", 4000, 4, 0.60)
    d = run("m2", 4000, 3, 0.40)        # fewer bits than c, worse than a with more bits: dominated
    assert frontier_models([a, b, c, d]) == [("m1", 4), ("m2", 4)]
    low = [dict(a, value=3.0), dict(b, value=2.5)]
    assert frontier_models(low, "t/bits_per_byte") == [("m1", 4), ("m1", 8)]


def k_runs(stderr, offsets):
    """Each k's score rises 0.05 per doubling of total bits, shifted by offsets[k]."""
    runs = Runs()
    for model, n in MODELS.items():
        for k, offset in offsets.items():
            runs.add(model, k, 0.3 + offset + 0.05 * np.log2(n * (k + 0.25)), k + 0.25, stderr=stderr)
    return runs


def analysed(stderr, offsets, metric="mean_zero_shot/acc"):
    return metric, findings(k_runs(stderr, offsets).frame(), metric, n_boot=200)


def test_report_says_agrees_differs_and_undecided_as_the_data_does():
    text = render_report([analysed(0.001, {3: -0.03, 4: 0.0, 8: -0.02})])
    summary = text.split("## The paper's findings, metric by metric")[1].split("\n# ")[0]
    assert "| 4-bit is almost always optimal for a fixed total of model bits | agrees (+0.0" in summary
    assert "Decided at " in text and "**4-bit** (nf4-b64)" in text
    text = render_report([analysed(0.001, {3: 0.03, 4: 0.0, 8: -0.02})])
    assert "| 4-bit is almost always optimal for a fixed total of model bits | differs (-0.0" in text
    text = render_report([analysed(0.3, {3: -0.03, 4: 0.0, 8: -0.02})])
    assert "| 4-bit is almost always optimal for a fixed total of model bits | undecided (" in text
    assert "**4-bit**" not in text and "undecided (4-bit ahead" in text


def test_empty_report_says_what_to_do():
    assert "run `kbit demo` first" in render_report([("mean_zero_shot/acc", findings(rows_to_frame([]), "t/acc"))])


def test_summary_sets_each_metric_against_the_paper_and_states_the_noise():
    text = render_report([analysed(0.02, {3: -0.03, 4: 0.0}), analysed(0.02, {3: 0.2, 4: 0.0}, "kbit_lastword/acc")])
    summary = text.split("## The paper's findings, metric by metric")[1].split("\n# ")[0]
    assert "| `mean_zero_shot/acc` | `kbit_lastword/acc` |" in summary
    assert text.count("median standard error of one score is 0.0200") == 2
    assert text.count("runs known only by value and stderr") == 2


def test_json_report_has_the_documented_shape():
    metric, found = analysed(0.001, {3: -0.03, 4: 0.0, 8: -0.02})
    data = json.loads(json.dumps(report_json(metric, found)))
    assert data["metric"] == metric and data["lower_is_better"] is False
    assert [f["id"] for f in data["findings"]] == list(FINDINGS)
    assert {f["verdict"] for f in data["findings"]} <= set(VERDICTS)
    budgets = [b for b in data["budgets"] if b["winner"] and not b["partial"]]
    assert budgets and all(b["winner_bits"] == 4 and b["decided"] and b["compared"] == [3, 4, 8] for b in budgets)
    partial = [b for b in data["budgets"] if b["partial"]]
    assert partial and not any(b["decided"] for b in partial) and all(b["missing"] for b in partial)
    assert all(b["margin_low"] <= b["margin"] <= b["margin_high"] for b in budgets)
    assert {"budget_bits", "winner_config", "scores"} <= set(budgets[0])
    scaling = data["scaling"]
    assert scaling["reference"] == "4-bit" and [g["bits"] for g in scaling["groups"]] == [3, 4, 8]
    three = scaling["groups"][0]
    assert three["margin"] == pytest.approx(-0.03, abs=0.01) and three["margin_high"] < 0  # d_3 - d_4
    low, high = three["measured_bits"]
    for row in scaling["fitted"]:  # a fitted score only inside the bits a k was measured on
        assert (row["scores"]["3-bit"] is not None) == (low * (1 - 1e-9) <= row["budget_bits"] <= high * (1 + 1e-9))
    assert data["findings"][0]["basis"] == "offsets"  # parallel curves: 4-bit judged on the offsets


def test_each_rounding_method_is_analysed_against_the_same_sixteen_bit_runs():
    runs = k_runs(0.001, {3: -0.03, 4: 0.0, 16: -0.1})
    for row in runs.rows:
        row["method"] = "rtn"
    gptq = [dict(r, run_id=100 + r["run_id"], method="gptq", value=r["value"] + 0.05, label=r["label"] + "-gptq")
            for r in runs.rows if r["bits"] != 16]
    frame = rows_to_frame(runs.rows + gptq)
    parts = by_method(frame)
    assert set(parts) == {"gptq", "rtn"}
    for method, part in parts.items():
        assert set(part.loc[part["bits"] < 16, "method"]) == {method}
        assert (part["bits"] == 16).sum() == len(MODELS)
    assert list(by_method(rows_to_frame(runs.rows))) == [""]
    assert method_of("kbit_heldout/bits_per_byte (gptq)") == "gptq" and method_of("t/acc") is None

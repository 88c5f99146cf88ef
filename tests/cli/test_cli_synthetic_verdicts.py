"""The method's verdicts on synthetic families with a known answer, each through the user's path:
a results file written as `kbit results --format json` writes one, `kbit results import`, then
`kbit report --format json` (issue 22's checks: ties stay ties, coverage alone decides nothing,
a real lead is found, noise decides nothing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kbit.cli.main import main

SIZES = {"m1": 1e6, "m2": 2e6, "m3": 4e6, "m4": 8e6}
QUANTIZED_SHARE = 0.8  # the rest of each model stays 16-bit, as embeddings and head do


def run_row(run_id, model, k, value, stderr, dtype="nf", blocksize=64):
    n = SIZES[model]
    bpp = 16.0 if k == 16 else k + 16 / blocksize
    n_quantized = 0 if k == 16 else n * QUANTIZED_SHARE
    return {
        "run_id": run_id, "status": "done", "model": model, "family": "synthetic", "revision": "main",
        "bits": k, "dtype": "none" if k == 16 else dtype, "blocksize": None if k == 16 else blocksize,
        "exponent_bits": None, "outlier_fraction": 0.0, "method": "rtn",
        "n_params": int(n), "n_quantized": int(n_quantized), "bits_per_param": bpp,
        "total_bits": n_quantized * bpp + (n - n_quantized) * 16,
        "t/acc": float(value), "t/acc_stderr": float(stderr),
    }


def family(score, ks, stderr, seed=0, models_of=None):
    """One run per (model, k): score(k, log2 total bits) plus normal noise of `stderr`."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        for model in (models_of or {}).get(k, SIZES):
            row = run_row(len(rows) + 1, model, k, 0.0, stderr)
            row["t/acc"] = float(score(k, np.log2(row["total_bits"])) + rng.normal(0, stderr))
            rows.append(row)
    return rows


@pytest.fixture()
def lab(target, tmp_path):
    """The folder results files are written to; `target` (conftest) is the database they go to."""
    return tmp_path


def imported_report(lab, capsys, rows, name) -> dict:
    path = lab / f"{name}.json"
    path.write_text(json.dumps(rows))
    assert main(["results", "import", str(path), "--team", "lab", "--name", name]) == 0
    sweep_id = int(capsys.readouterr().out.split("sweep ")[1].split()[0])
    assert main(["report", "--format", "json", "--metric", "t/acc", "--sweep", str(sweep_id)]) == 0
    data = json.loads(capsys.readouterr().out)
    return data[0] if isinstance(data, list) else data


def verdicts(report) -> dict:
    return {f["id"]: f["verdict"] for f in report["findings"]}


def line(k, x):
    return 0.2 + 0.03 * x


@pytest.mark.slow
def test_a_four_bit_tied_with_five_rivals_is_almost_never_said_to_differ(lab, capsys):
    differs = 0
    for seed in range(20):
        rows = family(line, (3, 4, 5, 6, 8, 16), stderr=0.01, seed=seed)
        report = imported_report(lab, capsys, rows, f"tied-{seed}")
        differs += verdicts(report)["four_bit_optimal"] == "differs"
        assert verdicts(report)["four_bit_optimal"] != "agrees"
    assert differs <= 1


def test_b_parallel_curved_curves_with_equal_offsets_decide_nothing(lab, capsys):
    def curved(k, x):
        return 0.2 + 0.03 * x - 0.004 * (x - 22) ** 2

    report = imported_report(lab, capsys, family(curved, (3, 4, 8, 16), stderr=0.01), "curved")
    assert not any(b["decided"] for b in report["budgets"])
    assert set(verdicts(report).values()) <= {"undecided", "not enough data"}
    shared = report["parallel"]  # the one-curve model sees them parallel, with no winner
    assert shared["parallel"] and not shared["decided"] and {g["bits"] for g in shared["groups"]} == {3, 4, 8, 16}


def test_c_a_budget_only_8_and_16_bit_reach_is_partial_and_not_counted(lab, capsys):
    small = {3: ("m1", "m2", "m3"), 4: ("m1", "m2", "m3")}  # m4 at 3 and 4 bits is left out
    report = imported_report(lab, capsys, family(line, (3, 4, 8, 16), stderr=0.001, models_of=small), "coverage")
    top = report["budgets"][-1]
    assert top["compared"] == [8, 16] and top["partial"] and top["missing"] == [3, 4] and not top["decided"]
    full = [b for b in report["budgets"] if not b["partial"]]
    assert full and all(b["compared"] == [3, 4, 8, 16] for b in full)


def test_d_a_clearly_better_3_bit_is_found(lab, capsys):
    def three_ahead(k, x):
        return line(k, x) + (0.05 if k == 3 else 0.0)

    report = imported_report(lab, capsys, family(three_ahead, (3, 4, 8, 16), stderr=0.002), "three")
    full = [b for b in report["budgets"] if not b["partial"] and 3 in b["compared"]]
    assert full and all(b["decided"] and b["winner_bits"] == 3 for b in full)
    assert verdicts(report)["four_bit_optimal"] == "differs"
    shared = report["parallel"]
    assert shared["winner_bits"] == 3 and shared["decided"] and shared["margin"] == pytest.approx(0.05, abs=0.01)


def test_e_noise_decides_nothing(lab, capsys):
    def three_ahead(k, x):
        return line(k, x) + (0.01 if k == 3 else 0.0)

    report = imported_report(lab, capsys, family(three_ahead, (3, 4, 8, 16), stderr=0.2), "noisy")
    assert not any(b["decided"] for b in report["budgets"])
    assert set(verdicts(report).values()) <= {"undecided", "not enough data"}


def test_two_families_are_reported_apart_never_pooled(lab, capsys):
    one = family(line, (3, 4, 16), stderr=0.002)
    other = [dict(r, family="other", **{"t/acc": r["t/acc"] + 0.1}) for r in family(line, (3, 4, 16), stderr=0.002)]
    path = lab / "two.json"
    path.write_text(json.dumps(one + other))
    assert main(["results", "import", str(path), "--team", "lab", "--name", "two"]) == 0
    capsys.readouterr()
    assert main(["report", "--format", "json", "--metric", "t/acc"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["family"] for r in reports] == ["other", "synthetic"]
    assert all(r["n_runs"] == len(one) for r in reports)
    assert main(["report", "--metric", "t/acc", "--output", "-"]) == 0
    text = capsys.readouterr().out
    assert "# `t/acc [other]`" in text and "# `t/acc [synthetic]`" in text and "Family `other`, from sweep 1." in text

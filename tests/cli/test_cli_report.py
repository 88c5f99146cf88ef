"""The RESULTS.md generator: frontier, winners per budget and the paper verdicts come from the data
(kbit.analysis), the text from kbit.cli.report."""

from kbit.analysis import findings, rows_to_frame
from kbit.cli.report import render_report


def run(model, n, bits, value, dtype="nf", blocksize=64):
    bpp = bits + (16 / blocksize if blocksize and bits < 16 else 0)
    run.counter += 1
    return {"run_id": run.counter, "model": model, "n_params": n, "bits": bits, "dtype": dtype, "blocksize": blocksize,
            "label": f"{dtype}{bits}-b{blocksize}", "total_bits": n * bpp, "value": value, "family": "f"}


run.counter = 0


def frontier_models(rows, metric="acc"):
    return [(r["model"], r["bits"]) for r in findings(rows_to_frame(rows), metric).frontier.to_dict("records")]


def test_frontier_drops_dominated_runs_in_either_direction():
    a = run("m1", 1000, 4, 0.50)
    b = run("m1", 1000, 8, 0.49)        # more bits, worse: dominated
    c = run("m2", 4000, 4, 0.60)
    d = run("m2", 4000, 3, 0.40)        # fewer bits than c, worse than a with more bits: dominated
    assert frontier_models([a, b, c, d]) == [("m1", 4), ("m2", 4)]
    low = [dict(a, value=3.0), dict(b, value=2.5)]
    assert frontier_models(low, "bits_per_byte") == [("m1", 4), ("m1", 8)]


def test_budget_winner_is_the_best_run_that_fits_and_each_k_gets_its_best_within():
    rows = [run("small", 1000, 4, 0.50), run("small", 1000, 8, 0.52),
            run("big", 2000, 4, 0.60), run("big", 2000, 8, 0.61)]
    table = findings(rows_to_frame(rows), "acc").budgets.to_dict("records")
    # frontier: small@4 (4250 bits), small@8 (8250), big@4 (8500), big@8 (16500)
    assert [(r["best_model"], r["best_k"]) for r in table] == [("small", 4), ("small", 8), ("big", 4), ("big", 8)]
    at_big4 = table[2]
    assert at_big4["k=4"] == 0.60 and at_big4["k=8"] == 0.52  # small@8 fits the big model's 4-bit budget


def test_report_verdicts_follow_the_data():
    agree = [run("s", 1000, 4, 0.5), run("s", 1000, 8, 0.45), run("b", 2000, 4, 0.6), run("b", 2000, 8, 0.55)]
    text = render_report([(agree, "mean_zero_shot", "acc")])
    assert "4-bit wins 2 of 2 budgets" in text
    disagree = [run("s", 1000, 4, 0.3), run("s", 1000, 3, 0.5), run("b", 2000, 4, 0.35), run("b", 2000, 3, 0.6)]
    text = render_report([(disagree, "mean_zero_shot", "acc")])
    assert "4-bit wins 0 of 2 budgets" in text and "| differs |" in text


def test_empty_report_says_what_to_do():
    assert "run `kbit demo` first" in render_report([([], "mean_zero_shot", "acc")])


def test_summary_sets_each_metric_against_the_paper_and_states_the_noise():
    agree = [run("s", 1000, 4, 0.5), run("s", 1000, 8, 0.45), run("b", 2000, 4, 0.6), run("b", 2000, 8, 0.55)]
    disagree = [run("s", 1000, 4, 0.3), run("s", 1000, 3, 0.5), run("b", 2000, 4, 0.35), run("b", 2000, 3, 0.6)]
    for r in agree + disagree:
        r["stderr"] = 0.02
    text = render_report([(agree, "mean_zero_shot", "acc"), (disagree, "kbit_lastword", "acc")])
    summary = text.split("## The paper's findings, metric by metric")[1].split("\n# ")[0]
    assert "| `mean_zero_shot/acc` | `kbit_lastword/acc` |" in summary
    assert "| 4-bit is almost always optimal for a fixed total of model bits | agrees | differs |" in summary
    assert text.count("median standard error of one score is 0.0200") == 2

"""The RESULTS.md generator: frontier, winners per budget and the paper verdicts come from the data."""

from kbit.cluster.report import best_k_per_budget, pareto_front, render_report


def run(model, n, bits, value, dtype="nf", blocksize=64):
    bpp = bits + (16 / blocksize if blocksize and bits < 16 else 0)
    return {"model": model, "n_params": n, "bits": bits, "dtype": dtype, "blocksize": blocksize,
            "label": f"{dtype}{bits}-b{blocksize}", "total_bits": n * bpp, "value": value}


def test_pareto_front_drops_dominated_runs():
    a = run("m1", 1000, 4, 0.50)
    b = run("m1", 1000, 8, 0.49)        # more bits, worse: dominated
    c = run("m2", 4000, 4, 0.60)
    d = run("m2", 4000, 3, 0.40)        # fewer bits than c, worse than a with more bits: dominated
    front = pareto_front([a, b, c, d])
    assert front == [a, c]
    low = pareto_front([dict(a, value=3.0), dict(b, value=2.5)], lower=True)
    assert [r["bits"] for r in low] == [4, 8]


def test_best_k_per_budget_prefers_bigger_model_at_fewer_bits():
    rows = [run("small", 1000, 4, 0.50), run("small", 1000, 8, 0.52),
            run("big", 2000, 4, 0.60), run("big", 2000, 8, 0.61)]
    table = best_k_per_budget(rows)
    assert [e["budget_model"] for e in table] == ["small", "big"]
    # at the big model's 4-bit budget the small model's 8-bit fits too, but big@4 wins
    assert table[1]["best"]["model"] == "big" and table[1]["best"]["bits"] == 4
    assert table[1]["per_k"][8]["model"] == "small"


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

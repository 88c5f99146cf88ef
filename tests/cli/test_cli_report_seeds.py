"""The report names each size's training seeds (text and JSON) when some size has several, and says
nothing new with one seed per size."""

from kbit.analysis import findings
from kbit.cli.report import render_section, report_json
from tests.analysis.test_analysis_seeds import seeded_runs


def test_the_report_says_how_many_seeds_each_size_has():
    runs = seeded_runs({2: 0.06, 3: -0.03})
    found = findings(runs.frame(), "t/acc", runs.scores, n_boot=100)
    text = render_section("t/acc", found)
    assert "Training seeds per size: m1 3, m2 3, m3 3, m4 3." in text
    assert "runs of 4 models: m1 (1.00M params)" in text  # sizes, not seeds
    assert [(m["model"], m["seeds"]) for m in report_json("t/acc", found)["models"]] == [
        ("m1", 3), ("m2", 3), ("m3", 3), ("m4", 3)]
    single = seeded_runs({}, n_seeds=1)
    found = findings(single.frame(), "t/acc", single.scores, n_boot=100)
    assert "Training seeds" not in render_section("t/acc", found)
    assert {m["seeds"] for m in report_json("t/acc", found)["models"]} == {1}

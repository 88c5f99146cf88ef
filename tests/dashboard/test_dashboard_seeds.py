"""The Frontier page's caption names each size's training seeds when some size has several."""

from kbit.analysis import findings
from kbit.dashboard.tables import share_caption
from tests.analysis.test_analysis_seeds import seeded_runs


def test_the_caption_names_the_seeds_of_each_size_only_when_there_are_several():
    runs = seeded_runs({2: 0.06})
    caption = share_caption(findings(runs.frame(), "t/acc", runs.scores, n_boot=50))
    assert "Training seeds per size: m1 3, m2 3, m3 3, m4 3 (a size's seeds are one point" in caption
    assert caption.startswith("Share of a quantized run's total bits kept at 16 bits")
    single = seeded_runs({}, n_seeds=1)
    assert "Training seeds" not in share_caption(findings(single.frame(), "t/acc", single.scores, n_boot=50))

"""document_scores on lm-eval's raw output: which metrics get per-document scores, in what form
(test_workers_evaluate.py checks them against a real evaluation)."""

import math

from kbit.workers.results import document_scores


def sample(doc_id, filt="none", **metrics):
    return {"doc_id": doc_id, "filter": filt, "metrics": list(metrics), **metrics}


RAW = {
    "configs": {
        "mc": {"metric_list": [{"metric": "acc", "aggregation": "mean"}, {"metric": "acc_norm", "aggregation": "mean"}]},
        "ppl": {"metric_list": [{"metric": "bits_per_byte", "aggregation": "bits_per_byte"},
                                {"metric": "word_perplexity", "aggregation": "weighted_perplexity"}]},
        "lambada": {"metric_list": [{"metric": "perplexity", "aggregation": "perplexity"}, {"metric": "acc"}]},
        "gen": {},
    },
    "samples": {
        "mc": [sample(2, acc=1.0, acc_norm=0.0), sample(0, acc=0.0, acc_norm=1.0)],
        "ppl": [sample(0, bits_per_byte=(-100.0, 50), word_perplexity=(-100.0, 9)),
                sample(1, bits_per_byte=(-30.0, 20), word_perplexity=(-30.0, 4))],
        "lambada": [sample(0, perplexity=-2.5, acc=True), sample(1, perplexity=-0.5, acc=False)],
        "gen": [sample(0, "strict", exact_match=1.0), sample(0, "flexible", exact_match=0.0),
                sample(1, "strict", exact_match=float("nan")), sample(1, "flexible", exact_match=1.0)],
    },
}


def test_each_metric_in_its_per_document_form():
    got = {(e["task"], e["metric"]): e for e in document_scores(RAW)}
    # perplexities are exp of a ratio, not a ratio of sums: left out; one NaN drops gen/exact_match_strict
    assert set(got) == {("mc", "acc"), ("mc", "acc_norm"), ("ppl", "bits_per_byte"), ("lambada", "acc"),
                        ("gen", "exact_match_flexible")}
    assert got[("mc", "acc")] == {"task": "mc", "metric": "acc", "doc_ids": [0, 2], "values": [0.0, 1.0], "weights": None}
    bpb = got[("ppl", "bits_per_byte")]
    assert bpb["doc_ids"] == [0, 1] and bpb["weights"] == [50.0, 20.0]
    assert bpb["values"] == [100 / math.log(2), 30 / math.log(2)]
    assert math.isclose(sum(bpb["values"]) / sum(bpb["weights"]), 130 / 70 / math.log(2), rel_tol=1e-12)
    # no aggregation in the task's metric_list: lm-eval's default for the metric (acc: mean)
    assert got[("lambada", "acc")]["values"] == [1.0, 0.0]
    assert got[("gen", "exact_match_flexible")]["values"] == [0.0, 1.0]


def test_no_samples_no_scores():
    assert document_scores({"results": {}}) == []

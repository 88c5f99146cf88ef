"""`RunResult`, the record of one quantize-and-evaluate run, and how lm-eval's output becomes it:
flat metrics with their stderr (filter suffix dropped), `mean_zero_shot/acc`, compact per-document
scores (always), and verbose per-sample log-likelihoods (on request). `to_dict()` is the plain-JSON
shape in docs/interfaces.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

LN2 = math.log(2)
_SKIP_KEYS = {"alias", "name", "sample_len", "samples"}


@dataclass
class RunResult:
    config: dict
    status: str  # "done" | "failed"
    error_type: str | None = None
    error: str | None = None
    metrics: list[dict] = field(default_factory=list)
    bits: dict | None = None
    wall_time_s: float = 0.0
    peak_memory_bytes: int = 0
    device: str = "cpu"
    provenance: dict = field(default_factory=dict)
    samples: list[dict] | None = None
    retryable: bool = False  # a failure worth another attempt (workers/errors.py: transient)
    scores: list[dict] | None = None  # per-document scores (document_scores); None in results from before them

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunResult":
        return cls(**data)

    def metric(self, task: str, metric: str) -> float | None:
        """The value of one metric, or None when this run has no such metric."""
        for m in self.metrics:
            if m["task"] == task and m["metric"] == metric:
                return m["value"]
        return None


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):  # lm-eval writes "N/A" where it has no stderr
        return None
    return number if math.isfinite(number) else None


def bits_per_byte_stderr(samples: list[dict]) -> float | None:
    """Stderr of corpus bits-per-byte (a ratio of sums over documents), by the delta method."""
    pairs = [s["bits_per_byte"] for s in samples if isinstance(s.get("bits_per_byte"), (tuple, list))]
    n = len(pairs)
    if n < 2:
        return None
    ll = np.asarray([p[0] for p in pairs], dtype=float)
    nbytes = np.asarray([p[1] for p in pairs], dtype=float)
    ratio = ll.sum() / nbytes.sum()
    residual = ll - ratio * nbytes
    return float(math.sqrt(n / (n - 1) * (residual**2).sum()) / nbytes.sum() / LN2)


def _metric_name(metric: str, filt: str) -> str:
    return metric if filt == "none" else f"{metric}_{filt}"


def flatten_metrics(raw: dict) -> list[dict]:
    """lm-eval's results as [{"task", "metric", "value", "stderr"}], plus mean_zero_shot/acc."""
    rows = []
    for task, values in raw["results"].items():
        for key, value in values.items():
            if key in _SKIP_KEYS or "_stderr," in key or "," not in key:
                continue
            metric, _, filt = key.partition(",")
            stderr = _number(values.get(f"{metric}_stderr,{filt}"))
            if stderr is None and metric == "bits_per_byte":
                stderr = bits_per_byte_stderr(raw.get("samples", {}).get(task, []))
            name = _metric_name(metric, filt)
            if (number := _number(value)) is not None:
                rows.append({"task": task, "metric": name, "value": number, "stderr": stderr})
    groups = {name for name, subtasks in raw.get("group_subtasks", {}).items() if subtasks}
    accs = [r for r in rows if r["metric"] == "acc" and r["task"] not in groups]  # a group repeats its tasks
    if accs:
        errs = [r["stderr"] or 0.0 for r in accs]
        rows.append({
            "task": "mean_zero_shot", "metric": "acc",
            "value": sum(r["value"] for r in accs) / len(accs),
            "stderr": math.sqrt(sum(e * e for e in errs)) / len(accs),
        })
    return rows


def sample_records(raw: dict) -> list[dict]:
    """Per document: its log-likelihoods (one per choice / continuation / rolling document), the
    target, greedy flags where lm-eval has them, and byte/word counts for perplexity tasks."""
    records = []
    for task, samples in raw.get("samples", {}).items():
        for s in samples:
            resps = s.get("filtered_resps") or []
            lls, greedy = [], []
            for r in resps:
                if isinstance(r, (tuple, list)):
                    lls.append(_number(r[0]))
                    greedy.append(bool(r[1]) if len(r) > 1 else None)
                else:
                    lls.append(_number(r))
            record = {"task": task, "doc_id": int(s["doc_id"]), "loglikelihoods": lls, "target": s.get("target")}
            if any(g is not None for g in greedy):
                record["greedy"] = greedy
            if isinstance(s.get("bits_per_byte"), (tuple, list)):
                record["target"] = None  # the whole document; not repeated here
                record["bytes"] = int(s["bits_per_byte"][1])
                if isinstance(s.get("word_perplexity"), (tuple, list)):
                    record["words"] = int(s["word_perplexity"][1])
            records.append(record)
    return records


def _aggregation(raw: dict, task: str, metric: str) -> str | None:
    """The name of the aggregation lm-eval used for `metric` of `task`: the task's metric_list
    entry, else lm-eval's default for the metric (what the task itself falls back to)."""
    for entry in (raw.get("configs", {}).get(task) or {}).get("metric_list") or []:
        if entry.get("metric") == metric and entry.get("aggregation") is not None:
            agg = entry["aggregation"]
            return agg if isinstance(agg, str) else getattr(agg, "__name__", None)
    from lm_eval.api.registry import get_metric_aggregation

    default = get_metric_aggregation(metric)
    return getattr(default, "__name__", None)


def _per_document(aggregation: str | None, value) -> tuple[float, float | None] | None:
    """(value, weight) of one document such that the task's metric is sum(values)/sum(weights)
    (or the mean of values when the weight is None); None when it has no such form."""
    if aggregation == "mean" and isinstance(value, (bool, int, float, np.number)):
        number = float(value)
        return (number, None) if math.isfinite(number) else None
    if aggregation == "bits_per_byte" and isinstance(value, (tuple, list)) and len(value) == 2:
        ll, nbytes = _number(value[0]), _number(value[1])
        if ll is None or not nbytes:
            return None
        return -ll / LN2, nbytes  # bits of the document over its bytes: sums to corpus bits per byte
    return None


def document_scores(raw: dict) -> list[dict]:
    """One entry per (task, per-document metric): {"task", "metric", "doc_ids", "values",
    "weights"}, sorted by doc id, such that the reported metric is sum(values)/sum(weights) when
    weights is a list, else mean(values). Mean-aggregated metrics (acc, acc_norm, exact_match)
    give 0/1 or scalar values without weights; bits_per_byte gives each document's negative
    log-likelihood in bits with its byte count as weight. Any other metric is left out."""
    columns: dict[tuple[str, str], dict[int, tuple[float, float | None]]] = {}
    left_out: set[tuple[str, str]] = set()  # one document without the form drops the whole metric
    for task, samples in raw.get("samples", {}).items():
        aggregations: dict[str, str | None] = {}
        for s in samples:
            filt = s.get("filter", "none")
            for metric in s.get("metrics") or []:
                key = (task, _metric_name(metric, filt))
                if key in left_out:
                    continue
                if metric not in aggregations:
                    aggregations[metric] = _aggregation(raw, task, metric)
                point = _per_document(aggregations[metric], s.get(metric))
                if point is None:
                    left_out.add(key)
                    columns.pop(key, None)
                else:
                    columns.setdefault(key, {})[int(s["doc_id"])] = point
    entries = []
    for (task, metric), by_doc in columns.items():
        doc_ids = sorted(by_doc)
        weights = [by_doc[d][1] for d in doc_ids]
        entries.append({
            "task": task, "metric": metric, "doc_ids": doc_ids, "values": [by_doc[d][0] for d in doc_ids],
            "weights": None if weights[0] is None else weights,
        })
    return entries

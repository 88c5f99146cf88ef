"""evaluate_configs on the micro family through the real path: quantize with kbit.kernels,
evaluate with lm-eval on the bundled tasks, one result per config; typed failures."""

import json
import math
import re

import pytest
import torch

from kbit.kernels import QuantConfig
from kbit.sweeps import EvalSpec, ModelSpec
from kbit.workers import evaluate_configs, lmeval, loading, run

# the module's `group` evaluates a group (~2.7 s): once, in one pytest-xdist process
pytestmark = pytest.mark.xdist_group("test_workers_evaluate")

MODEL = "kbit/micro/m2"
FAST = EvalSpec(limit=40, batch_size=16)
CONFIGS = [QuantConfig(16), QuantConfig(8, "int", 64), QuantConfig(4, "nf", 64), QuantConfig(2, "int", None)]
KEYS = {"config", "status", "error_type", "error", "metrics", "bits", "wall_time_s", "peak_memory_bytes",
        "device", "provenance", "samples", "retryable", "scores"}


def declared_task_versions() -> dict:
    """The `metadata.version` each bundled task YAML declares (what lm-eval must report back)."""
    folder = lmeval.TASKS_DIR
    versions = {}
    for path in folder.glob("kbit_*.yaml"):
        text = path.read_text()
        name = re.search(r"^task: (\S+)", text, re.M).group(1)
        versions[name] = float(re.search(r"^  version: (\S+)", text, re.M).group(1))
    return versions


@pytest.fixture(scope="module")
def group(micro):
    """One group of four configs on one micro model, with the model-load count it took."""
    before = loading.MODEL_LOADS[MODEL]
    results = list(evaluate_configs(ModelSpec(MODEL), CONFIGS, EvalSpec(limit=40, batch_size=16, log_samples=True)))
    return results, loading.MODEL_LOADS[MODEL] - before


def test_one_result_per_config_in_order_from_one_load(group):
    results, loads = group
    assert loads == 1
    assert [r.config for r in results] == [c.to_dict() for c in CONFIGS]
    for r in results:
        d = json.loads(json.dumps(r.to_dict()))
        assert set(d) == KEYS and d["status"] == "done" and d["error"] is None, d["error"]
        names = {(m["task"], m["metric"]) for m in d["metrics"]}
        assert {("kbit_lastword", "acc"), ("kbit_choice", "acc"), ("kbit_choice", "acc_norm"),
                ("kbit_heldout", "bits_per_byte"), ("mean_zero_shot", "acc")} <= names
        assert not any("," in m["metric"] for m in d["metrics"])
        assert d["wall_time_s"] > 0 and d["peak_memory_bytes"] > 0 and d["device"] == "cpu"
        assert d["provenance"]["task_versions"] == declared_task_versions()
        assert d["provenance"]["kbit"] and d["provenance"]["seed"] == 1234 and d["provenance"]["lm_eval"]


def test_mean_zero_shot_is_the_mean_of_the_accuracy_tasks(group):
    r = group[0][0]
    accs = [r.metric("kbit_lastword", "acc"), r.metric("kbit_choice", "acc")]
    ses = [m["stderr"] for m in r.metrics if m["metric"] == "acc" and m["task"] != "mean_zero_shot"]
    mean = next(m for m in r.metrics if m["task"] == "mean_zero_shot")
    assert mean["value"] == pytest.approx(sum(accs) / 2)
    assert mean["stderr"] == pytest.approx(math.sqrt(sum(s * s for s in ses)) / 2)


def test_bits_follow_the_configs(group):
    bits = [r.bits for r in group[0]]
    assert bits[0]["n_quantized"] == 0 and bits[0]["bits_per_param"] == 16
    assert bits[1]["bits_per_param"] == pytest.approx(8 + 16 / 64)
    assert bits[3]["bits_per_param"] < bits[2]["bits_per_param"] < bits[1]["bits_per_param"]
    assert bits[0]["total_bits"] > bits[1]["total_bits"] > bits[2]["total_bits"] > bits[3]["total_bits"]
    assert len({b["n_params"] for b in bits}) == 1


def test_baseline_equals_the_unquantized_model(group):
    """The 16-bit run (after other configs ran on the same loaded model) scores exactly what a
    freshly loaded, never quantized model scores."""
    loaded = loading.load_model(ModelSpec(MODEL))
    tasks = lmeval.load_tasks(FAST.tasks, 0, FAST.seed)
    raw = lmeval.evaluate_model(loaded.model, loaded.tokenizer, tasks, batch_size=16, limit=40, seed=FAST.seed)
    fresh = {(m["task"], m["metric"]): m["value"] for m in run.flatten_metrics(raw)}
    baseline = {(m["task"], m["metric"]): m["value"] for m in group[0][0].metrics}
    assert fresh == baseline


def test_later_configs_of_a_group_score_exactly_what_they_score_alone(group):
    """Configs after the first reuse the group's requests and tokenizations (lmeval.GroupReuse):
    each scores what it scores in a group of its own, every metric and document score to the last digit."""
    for cfg, grouped in zip(CONFIGS[1:3], group[0][1:3]):
        alone = next(evaluate_configs(ModelSpec(MODEL), [cfg], EvalSpec(limit=40, batch_size=16, log_samples=True)))
        assert alone.metrics == grouped.metrics and alone.scores == grouped.scores
        assert alone.samples == grouped.samples


def test_a_group_builds_its_requests_and_tokenizes_each_string_once(micro, monkeypatch):
    from lm_eval.api.task import Task

    builds, encodes = [], []
    real_build = Task.build_all_requests
    monkeypatch.setattr(Task, "build_all_requests", lambda self, **kw: builds.append(self) or real_build(self, **kw))
    lm_class = lmeval._group_lm_class()
    real_encode = lm_class.__mro__[1].tok_encode
    monkeypatch.setattr(lm_class.__mro__[1], "tok_encode", lambda self, *a, **kw: encodes.append(a[0]) or real_encode(self, *a, **kw))
    results = list(evaluate_configs(ModelSpec(MODEL), CONFIGS[:3], EvalSpec(limit=5, batch_size=16)))
    assert [r.status for r in results] == ["done"] * 3
    assert len(builds) == len(FAST.tasks)  # once per task, not once per config
    assert encodes and len(encodes) == len(set(encodes))  # no string tokenized twice


def test_lower_bits_are_not_better_on_perplexity(group):
    bpb = {r.config["bits"]: (r.metric("kbit_heldout", "bits_per_byte"),
                              next(m["stderr"] for m in r.metrics if m["metric"] == "bits_per_byte")) for r in group[0]}
    assert all(se and se > 0 for _, se in bpb.values())
    for high, low in ((16, 8), (8, 4), (4, 2)):
        # paired runs on the same documents: allow only a small fraction of one stderr
        assert bpb[low][0] >= bpb[high][0] - 0.1 * bpb[high][1], bpb
    assert bpb[2][0] > bpb[16][0]  # 2 bits with one scale per tensor does hurt


def test_samples_reproduce_the_metrics(group):
    r = group[0][2]
    choice = [s for s in r.samples if s["task"] == "kbit_choice"]
    assert len(choice) == 40 and all(len(s["loglikelihoods"]) == 4 for s in choice)
    acc = sum(max(range(4), key=lambda i: s["loglikelihoods"][i]) == int(s["target"]) for s in choice) / 40
    assert acc == pytest.approx(r.metric("kbit_choice", "acc"))
    heldout = [s for s in r.samples if s["task"] == "kbit_heldout"]
    bpb = -sum(s["loglikelihoods"][0] for s in heldout) / sum(s["bytes"] for s in heldout) / math.log(2)
    assert bpb == pytest.approx(r.metric("kbit_heldout", "bits_per_byte"))
    assert group[0][0].to_dict()["samples"] is not None
    plain = list(evaluate_configs(ModelSpec(MODEL), CONFIGS[:1], EvalSpec(limit=2)))[0]
    assert plain.samples is None and {(e["task"], e["metric"]) for e in plain.scores} == per_document(plain)


def per_document(result) -> set[tuple[str, str]]:
    """The (task, metric) pairs of a result that must have per-document scores."""
    return {(m["task"], m["metric"]) for m in result.metrics
            if m["metric"] in ("acc", "acc_norm", "bits_per_byte") and m["task"] != "mean_zero_shot"}


def test_document_scores_reproduce_the_reported_metrics(group):
    """Every run keeps one score per document; re-aggregated they give the reported acc, acc_norm
    and bits_per_byte (what a paired bootstrap over documents starts from)."""
    for r in group[0]:
        reported = {(m["task"], m["metric"]): m["value"] for m in r.metrics}
        stored = {(e["task"], e["metric"]): e for e in r.scores}
        assert len(stored) == len(r.scores)
        assert set(stored) == per_document(r)
        assert {("kbit_choice", "acc"), ("kbit_choice", "acc_norm"), ("kbit_heldout", "bits_per_byte")} <= set(stored)
        for (task, metric), e in stored.items():
            assert e["doc_ids"] == sorted({s["doc_id"] for s in r.samples if s["task"] == task})  # unique, all of them
            assert len(e["values"]) == len(e["doc_ids"])
            if metric == "bits_per_byte":
                assert len(e["weights"]) == len(e["doc_ids"]) and min(e["weights"]) > 0
                value = sum(e["values"]) / sum(e["weights"])
            else:
                assert e["weights"] is None and set(e["values"]) <= {0.0, 1.0}
                value = sum(e["values"]) / len(e["values"])
            assert math.isclose(value, reported[(task, metric)], rel_tol=1e-9), (task, metric)
        accs = [e["values"] for (task, metric), e in stored.items() if metric == "acc"]
        mean = sum(sum(v) / len(v) for v in accs) / len(accs)
        assert math.isclose(mean, reported[("mean_zero_shot", "acc")], rel_tol=1e-9)


def test_missing_model_fails_every_config_with_a_clear_error(micro):
    for model, words in [("kbit/micro/m9", "family 'micro' has no size 'm9'"),
                         ("/no/such/model", "does not exist"),
                         ("no-such-org/no-such-model", "could not be loaded")]:
        results = list(evaluate_configs(ModelSpec(model), CONFIGS[:2], FAST))
        assert [r.status for r in results] == ["failed", "failed"]
        assert {r.error_type for r in results} == {"model_not_found"}
        assert words in results[0].error and results[0].metrics == [] and results[0].bits is None
        assert not any(r.retryable for r in results)  # permanent: retrying cannot help


def test_a_network_failure_while_loading_is_transient_and_retryable(monkeypatch):
    """transformers wraps a connection error in a plain OSError: the cause decides."""
    import requests

    def unreachable(*args, **kwargs):
        try:
            raise requests.exceptions.ConnectionError("Max retries exceeded: Temporary failure in name resolution")
        except requests.exceptions.ConnectionError as cause:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from cause

    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", unreachable)
    results = list(evaluate_configs(ModelSpec("EleutherAI/pythia-70m"), CONFIGS[:2], FAST))
    assert [(r.status, r.error_type, r.retryable) for r in results] == [("failed", "model_unavailable", True)] * 2
    assert "the run is retried" in results[0].error


def test_what_counts_as_a_network_failure():
    class Response:
        def __init__(self, status):
            self.status_code = status

    class HfHubHTTPError(OSError):
        def __init__(self, status):
            super().__init__(f"HTTP {status}")
            self.response = Response(status)

    assert loading.is_network_failure(TimeoutError("read timed out"))
    assert loading.is_network_failure(HfHubHTTPError(503))
    assert not loading.is_network_failure(HfHubHTTPError(404))  # no such repository: permanent
    assert not loading.is_network_failure(OSError("no config.json"))


def test_unknown_task_is_a_clear_typed_error(micro):
    results = list(evaluate_configs(ModelSpec(MODEL), CONFIGS[:2], EvalSpec(tasks=("kbit_choise",), limit=5)))
    assert [(r.status, r.error_type) for r in results] == [("failed", "task_not_found")] * 2
    assert "unknown lm-eval task 'kbit_choise' (did you mean kbit_choice" in results[0].error


def test_an_exception_in_one_config_does_not_stop_the_others(micro, monkeypatch):
    real = run.quantize_model_

    def failing_at_4_bits(model, cfg, **kw):
        if cfg.bits == 4:
            raise RuntimeError("kernel exploded\nsecond line")
        return real(model, cfg, **kw)

    monkeypatch.setattr(run, "quantize_model_", failing_at_4_bits)
    configs = [QuantConfig(8, "int", 64), QuantConfig(4, "nf", 64), QuantConfig(16)]
    results = list(evaluate_configs(ModelSpec(MODEL), configs, EvalSpec(limit=5)))
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert results[1].error_type == "evaluation_error" and results[1].error == "RuntimeError: kernel exploded"
    assert results[1].metrics == [] and results[1].config == configs[1].to_dict()


def test_should_stop_ends_the_group(micro):
    asked = []

    def stop_after_one():
        asked.append(1)
        return len(asked) > 1

    results = list(evaluate_configs(ModelSpec(MODEL), CONFIGS, EvalSpec(limit=3), should_stop=stop_after_one))
    assert len(results) == 1 and results[0].status == "done"


def test_local_folder_loads_like_a_hub_model(micro):
    path = str(micro["kbit/micro/m1"])
    before = loading.MODEL_LOADS[path]
    results = list(evaluate_configs(ModelSpec(path), [QuantConfig(16)], EvalSpec(tasks=("kbit_choice",), limit=5)))
    assert results[0].status == "done" and results[0].provenance["model"] == path
    assert loading.MODEL_LOADS[path] == before + 1


def test_out_of_memory_on_a_gpu_retries_with_half_the_batch():
    tried = []

    def evaluate(batch_size):
        tried.append(batch_size)
        if batch_size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"ok": batch_size}

    assert run.evaluate_with_retry(evaluate, 16, on_gpu=True, device="gpu") == ({"ok": 2}, 2)
    assert tried == [16, 8, 4, 2]
    with pytest.raises(run.OutOfMemory, match="out of memory at batch size 16 on cpu: OutOfMemoryError: CUDA out"):
        run.evaluate_with_retry(evaluate, 16, on_gpu=False, device="cpu")
    with pytest.raises(ValueError, match="not memory"):
        run.evaluate_with_retry(lambda b: (_ for _ in ()).throw(ValueError("not memory")), 4, on_gpu=True, device="gpu")


def test_out_of_memory_becomes_a_typed_result_and_the_next_config_runs(micro, monkeypatch):
    real = lmeval.evaluate_model
    calls = []

    def out_of_memory_once(*args, **kw):
        calls.append(kw["batch_size"])
        if len(calls) == 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")
        return real(*args, **kw)

    monkeypatch.setattr(lmeval, "evaluate_model", out_of_memory_once)
    results = list(evaluate_configs(ModelSpec(MODEL), CONFIGS[:2], EvalSpec(tasks=("kbit_choice",), limit=3)))
    assert [(r.status, r.error_type) for r in results] == [("failed", "out_of_memory"), ("done", None)]
    assert "out of memory at batch size 8 on cpu" in results[0].error


def test_a_fractional_limit_evaluates_that_share_of_each_tasks_documents(micro):
    """`eval: {limit: 0.5}` passes `kbit submit --check`; the worker must run it, on half the documents."""
    from kbit.family.taskdata import load_docs

    spec = EvalSpec(tasks=("kbit_choice",), limit=0.5, batch_size=16, log_samples=True)
    [result] = evaluate_configs(ModelSpec("kbit/micro/m1"), [QuantConfig(16)], spec)
    assert result.status == "done", result.error
    assert len(result.samples) == math.ceil(len(load_docs("kbit_choice")) * 0.5)

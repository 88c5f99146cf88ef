"""Models in a sweep for real checkpoints: Hugging Face ids at a revision, local folders, the load
dtype and device_map; how they reach the worker (the run's `eval` field) and the cache key; the
example sweep of every family parsed by the real reader."""


import pytest

from kbit.family.members import family_members
from kbit.kernels import QuantConfig
from kbit.sweeps import ModelEntry, ModelSpec, Sweep, SweepError, expand_runs, load_sweep, parse_sweep
from kbit.sweeps.evalspec import EvalSpec
from kbit.sweeps.expand import cache_key
from kbit.sweeps.runspec import RunEval
from tests.support.paths import EXAMPLES, example_sweeps

PAPER_TASKS = ["lambada_openai", "piqa", "hellaswag", "winogrande"]
FAMILY_EXAMPLES = {"opt.yaml": "opt", "bloom.yaml": "bloom", "gpt2.yaml": "gpt2", "llama.yaml": "llama-2",
                   "pythia.yaml": "pythia"}


def parse(text):
    return parse_sweep(text, source="s.yaml", default_name="t", family_members=family_members)


@pytest.mark.parametrize("path", example_sweeps(), ids=lambda p: p.name)
def test_every_example_sweep_parses_with_the_real_reader(path):
    sweep = load_sweep(path, family_members=family_members)
    assert Sweep.from_spec(sweep.spec()) == sweep
    runs = expand_runs(sweep, numerics_version="1")
    assert len(runs) == sweep.n_runs and len({r["cache_key"] for r in runs}) == len(runs)


@pytest.mark.parametrize("name, family", sorted(FAMILY_EXAMPLES.items()))
def test_each_family_example_is_one_family_on_the_papers_tasks(name, family):
    sweep = load_sweep(EXAMPLES / name, family_members=family_members)
    assert {m.family for m in sweep.models} == {family}
    assert list(sweep.eval.tasks) == PAPER_TASKS and sweep.eval.num_fewshot == 0
    assert {c.bits for c in sweep.configs} >= {3, 4, 8, 16}


def test_big_models_load_in_half_precision_spread_over_gpus():
    opt = {m.model: m for m in load_sweep(EXAMPLES / "opt.yaml", family_members=family_members).models}
    assert opt["facebook/opt-66b"].load_options() == {"dtype": "float16", "device_map": "auto"}
    assert opt["facebook/opt-125m"].load_options() == {"dtype": "float16"}
    bloom = load_sweep(EXAMPLES / "bloom.yaml", family_members=family_members)
    assert {m.dtype for m in bloom.models} == {"bfloat16"}


def test_dtype_and_device_map_reach_the_worker_through_the_run():
    sweep = parse("models:\n  - {model: facebook/opt-66b, dtype: fp16, device_map: auto}\n  - facebook/opt-125m\n"
                  "grid: {bits: [4], dtypes: [nf], blocksizes: [64]}\ntasks: [piqa]\n")
    big, small = sweep.models
    assert (big.dtype, big.device_map) == ("float16", "auto")  # fp16 is float16's short name
    assert (small.dtype, small.device_map) == ("auto", None)
    runs = expand_runs(Sweep.from_spec(sweep.spec()), numerics_version="1")
    by_model = {r["model"]: r for r in runs if r["config"]["bits"] == 4}
    evaluation = RunEval.from_dict(by_model["facebook/opt-66b"]["eval"])  # what kbit.workers.evaluate_group does
    assert evaluation.load == {"dtype": "float16", "device_map": "auto"}
    assert evaluation.eval == sweep.eval
    assert evaluation.model_spec("facebook/opt-66b") == ModelSpec("facebook/opt-66b", dtype="float16", device_map="auto")
    # a model loaded the default way keeps the run fields (and cache keys) it always had
    assert by_model["facebook/opt-125m"]["eval"] == sweep.eval.to_dict()
    small = RunEval.from_dict(by_model["facebook/opt-125m"]["eval"])
    assert (small.eval, small.load) == (sweep.eval, {})


def test_the_cache_key_follows_the_dtype_not_the_placement():
    cfg, ev = QuantConfig(4, "nf", 64), {"tasks": ["piqa"]}
    default = cache_key("m", "main", cfg, ev, "1")
    assert cache_key("m", "main", cfg, ev, "1", dtype="auto") == default
    assert cache_key("m", "main", cfg, ev, "1", dtype="float16") != default
    one_gpu = parse("models: [{model: m, dtype: bf16}]\ntasks: [piqa]\n")
    spread = parse("models: [{model: m, dtype: bf16, device_map: auto}]\ntasks: [piqa]\n")
    assert expand_runs(one_gpu, "1")[0]["cache_key"] == expand_runs(spread, "1")[0]["cache_key"]
    assert expand_runs(one_gpu, "1")[0]["eval"] != expand_runs(spread, "1")[0]["eval"]  # but never one load


def test_the_same_model_in_two_dtypes_is_two_models():
    sweep = parse("models:\n  - {model: m, dtype: fp16}\n  - {model: m, dtype: bf16}\n  - {model: m, dtype: float16}\n"
                  "tasks: [piqa]\n")
    assert sorted(m.dtype for m in sweep.models) == ["bfloat16", "float16"]


def test_a_local_folder_is_a_model_and_takes_no_revision():
    sweep = parse("models:\n  - model: /models/opt-125m\ntasks: [piqa]\n")
    assert sweep.models[0].model == "/models/opt-125m" and sweep.models[0].family == "opt"
    with pytest.raises(SweepError) as info:
        parse("models:\n  - model: /models/opt-125m\n    revision: v2\ntasks: [piqa]\n")
    assert "line 2" in str(info.value) and "revision='v2' applies to Hugging Face ids only" in str(info.value)
    with pytest.raises(ValueError, match="'/models/opt-125m' is a local folder"):
        ModelSpec("/models/opt-125m", revision="v2")


@pytest.mark.parametrize("name, local", [
    ("/models/opt-125m", True), ("./m", True), ("../m", True), ("~/m", True), (".", True),
    ("models/opt/125m", True),  # three parts: no hub id has them
    ("EleutherAI/pythia-70m", False), ("gpt2", False), ("kbit/micro/m1", False), (".hidden", False), ("", False),
])
def test_one_rule_for_a_local_path_on_every_path(name, local, tmp_path, monkeypatch):
    from kbit.service.memoryneed import checkpoint_weight_bytes
    from kbit.sweeps.modelids import is_local_path

    assert is_local_path(name) is local
    if local and name not in (".", ""):
        # the reader refuses a revision for it; the scheduler's estimate does not look for it in the hub cache
        with pytest.raises(ValueError, match="is a local folder"):
            ModelSpec(name, revision="v2")
        monkeypatch.chdir(tmp_path)
        assert checkpoint_weight_bytes(name, "main") is None


@pytest.mark.parametrize("entry, line, words", [
    ("{model: m, dtype: int4}", 2, ["models[0].dtype", "'int4' is not allowed", "auto, float32 (fp32), bfloat16 (bf16), float16 (fp16)"]),
    ("{model: m, device_map: everywhere}", 2, ["models[0].device_map", "'everywhere' is not allowed", "balanced"]),
    ("{model: m, dtpye: fp16}", 2, ["did you mean 'dtype'"]),
    ("{family: micro, dtype: fp8}", 2, ["'fp8' is not allowed"]),
])
def test_bad_load_settings_are_named_at_their_line(entry, line, words):
    with pytest.raises(SweepError) as info:
        parse(f"models:\n  - {entry}\ntasks: [piqa]\n")
    message = str(info.value)
    assert f"line {line}:" in message
    for word in words:
        assert word in message, message


def test_load_settings_round_trip_and_are_checked_on_every_path():
    entry = ModelEntry("bigscience/bloom-1b1", dtype="bf16", device_map="balanced")
    assert entry.to_dict() == {"model": "bigscience/bloom-1b1", "revision": "main", "family": "bloom",
                               "dtype": "bfloat16", "device_map": "balanced"}
    assert ModelEntry(**entry.to_dict()) == entry
    assert ModelEntry("m").to_dict() == {"model": "m", "revision": "main", "family": "m"}  # defaults left out
    spec = ModelSpec("m", dtype="fp32", device_map="auto")
    assert spec.dtype == "float32" and ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="with device='cpu' leave it out"):
        ModelSpec("m", device="cpu", device_map="auto")
    with pytest.raises(SweepError, match="dtype"):
        Sweep.from_spec({"name": "x", "models": [{"model": "m", "dtype": "int8"}], "configs": [{"bits": 16}],
                         "eval": {"tasks": ["piqa"]}})
    assert RunEval(EvalSpec(("piqa",))).to_dict() == EvalSpec(("piqa",)).to_dict()


def test_a_sweep_model_is_a_model_spec_with_its_family_and_placement():
    """ModelEntry declares only what a sweep adds; ModelSpec's fields and rules are its own."""
    from dataclasses import fields

    entry = ModelEntry("bigscience/bloom-1b1", dtype="fp16", family="bloom", memory_gb=3)
    assert isinstance(entry, ModelSpec) and entry.dtype == "float16"
    assert [f.name for f in fields(ModelEntry)] == [f.name for f in fields(ModelSpec)] + ["family", "memory_gb"]
    with pytest.raises(ValueError, match=r"^dtype='fp8' is not allowed"):  # ModelSpec's rule, named by its field
        ModelEntry("m", dtype="fp8")

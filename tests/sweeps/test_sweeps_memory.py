"""A sweep model's declared GPU memory (`memory_gb`): a placement hint that travels with every run
under `model_load` (what the scheduler reads as `RunEval.memory_bytes`), stays out of the cache
key and out of ModelSpec, and leaves a sweep that does not name it exactly as it was."""

import hashlib
import json

import pytest

from kbit.family.members import family_members
from kbit.sweeps import ModelEntry, Sweep, SweepError, expand_runs, parse_sweep
from kbit.sweeps.evalspec import EvalSpec
from kbit.sweeps.runspec import LOAD_KEY, RunEval

GIB = 2**30
GRID = "grid: {bits: [4], dtypes: [nf, int], blocksizes: [64]}\ntasks: [piqa]\n"
WITH = ("models:\n  - {model: facebook/opt-66b, dtype: fp16, device_map: auto, memory_gb: 150}\n"
        "  - {model: facebook/opt-125m, memory_gb: 1.5}\n  - EleutherAI/pythia-70m\n" + GRID)
WITHOUT = ("models:\n  - {model: facebook/opt-66b, dtype: fp16, device_map: auto}\n"
           "  - {model: facebook/opt-125m}\n  - EleutherAI/pythia-70m\n" + GRID)


def parse(text):
    return parse_sweep(text, source="s.yaml", default_name="t", family_members=family_members)


def runs_of(text):
    sweep = parse(text)
    return expand_runs(Sweep.from_spec(sweep.spec()), numerics_version="1")  # as the scheduler rebuilds it


def test_memory_gb_travels_in_every_runs_model_load_and_gives_bytes():
    runs = runs_of(WITH)
    assert len(runs) == 3 * 3  # the baseline and two grid points per model
    need = {"facebook/opt-66b": 150 * GIB, "facebook/opt-125m": 3 * GIB // 2, "EleutherAI/pythia-70m": None}
    for run in runs:
        assert RunEval.from_dict(run["eval"]).memory_bytes == need[run["model"]], run
    big = [r for r in runs if r["model"] == "facebook/opt-66b"]
    assert all(r["eval"][LOAD_KEY] == {"dtype": "float16", "device_map": "auto", "memory_gb": 150} for r in big)
    assert all(r["eval"][LOAD_KEY] == {"memory_gb": 1.5} for r in runs if r["model"] == "facebook/opt-125m")
    assert isinstance(RunEval.from_dict(big[0]["eval"]).memory_bytes, int)


def without_hint(evaluation: dict) -> dict:
    """A run's eval field with the memory_gb hint taken out (and model_load, when that empties it)."""
    evaluation = dict(evaluation)
    load = {k: v for k, v in evaluation.pop(LOAD_KEY, {}).items() if k != "memory_gb"}
    return {**evaluation, LOAD_KEY: load} if load else evaluation


def test_a_sweep_without_memory_gb_keeps_its_spec_runs_and_keys():
    with_, without = runs_of(WITH), runs_of(WITHOUT)
    assert [r["cache_key"] for r in with_] == [r["cache_key"] for r in without]  # the hint is no measurement
    for a, b in zip(with_, without):
        assert without_hint(a["eval"]) == b["eval"]  # the hint is all that differs
        assert {k: v for k, v in a.items() if k != "eval"} == {k: v for k, v in b.items() if k != "eval"}
        assert RunEval.from_dict(b["eval"]).memory_bytes is None
    assert with_[3]["eval"] != without[3]["eval"]  # opt-125m: model_load {memory_gb: 1.5} vs none at all
    assert LOAD_KEY not in without[3]["eval"] and LOAD_KEY not in without[6]["eval"]
    assert parse(WITHOUT).spec()["models"] == [
        {"model": "facebook/opt-66b", "revision": "main", "family": "opt", "dtype": "float16", "device_map": "auto"},
        {"model": "facebook/opt-125m", "revision": "main", "family": "opt"},
        {"model": "EleutherAI/pythia-70m", "revision": "main", "family": "pythia"},
    ]
    assert parse(WITH).spec()["models"][1] == {"model": "facebook/opt-125m", "revision": "main", "family": "opt",
                                               "memory_gb": 1.5}
    # the sweep without the key: its spec and runs byte for byte as before memory_gb existed
    text = json.dumps({"spec": parse(WITHOUT).spec(), "runs": without}, sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == PINNED_WITHOUT


# sha256 of WITHOUT's spec and runs (numerics version "1") as the code before memory_gb produced them.
PINNED_WITHOUT = "b70ddce1371b9b7deb5d8935d5d083d33825460a9a2041e793ecdccf6abdfbae"


def test_a_family_takes_memory_gb_for_every_member():
    sweep = parse("models:\n  - {family: micro, memory_gb: 2}\ntasks: [piqa]\n")
    assert len(sweep.models) > 1 and {m.memory_gb for m in sweep.models} == {2}
    assert {RunEval.from_dict(r["eval"]).memory_bytes for r in expand_runs(sweep, numerics_version="1")} == {2 * GIB}


@pytest.mark.parametrize("value", ["0", "-1", "0.0", "abc", "true", "100001", "1.0e+9", ".nan", ".inf", "[1]"])
def test_a_bad_memory_gb_is_one_problem_at_its_line(value):
    with pytest.raises(SweepError) as info:
        parse(f"name: x\nmodels:\n  - EleutherAI/pythia-70m\n  - {{model: facebook/opt-66b, memory_gb: {value}}}\n"
              "tasks: [piqa]\n")
    problems = info.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith("line 4: models[1].memory_gb: "), problems
    assert "above 0 and at most 100000" in problems[0] and "leave it out" in problems[0]


def test_a_bad_memory_gb_is_refused_on_every_path():
    with pytest.raises(ValueError, match="memory_gb=0 is not allowed"):
        ModelEntry("m", memory_gb=0)
    with pytest.raises(SweepError, match="memory_gb"):  # the scheduler's rebuild of a stored spec
        Sweep.from_spec({"name": "x", "models": [{"model": "m", "memory_gb": -5}], "configs": [{"bits": 16}],
                         "eval": {"tasks": ["piqa"]}})
    entry = ModelEntry("m", memory_gb=100_000)
    assert ModelEntry(**entry.to_dict()) == entry and entry.load_options() == {"memory_gb": 100_000}
    assert ModelEntry("m", memory_gb=None).to_dict() == {"model": "m", "revision": "main", "family": "m"}


def test_the_worker_builds_its_model_spec_from_a_run_with_memory_gb():
    runs = runs_of(WITH)
    for run in runs:
        evaluation = RunEval.from_dict(run["eval"])  # as kbit.workers.evaluate_group reads it
        assert "memory_gb" not in evaluation.load
        spec = evaluation.model_spec(run["model"], run["revision"])
        assert evaluation.eval == EvalSpec(("piqa",))
        if run["model"] == "facebook/opt-66b":
            assert (spec.dtype, spec.device_map) == ("float16", "auto")
        assert RunEval.from_dict(run["eval"]).memory_bytes is not None or run["model"] == "EleutherAI/pythia-70m"
    # reading leaves the run's own field as it was (the scheduler still reads the hint from it)
    assert runs[0]["eval"][LOAD_KEY]["memory_gb"] == 150


def test_memory_bytes_of_evals_without_a_declaration():
    def memory_bytes(field):
        return RunEval.from_dict(field).memory_bytes

    assert memory_bytes({"tasks": ["piqa"]}) is None
    assert memory_bytes({"tasks": ["piqa"], LOAD_KEY: {"dtype": "float16"}}) is None
    assert memory_bytes({"tasks": ["piqa"], LOAD_KEY: {"memory_gb": 0.25}}) == GIB // 4

"""ModelSpec / EvalSpec: validation with clear messages, exact to_dict/from_dict round trips."""

import json

import pytest

from kbit.sweeps import EvalSpec, ModelSpec
from kbit.workers import RunResult


def test_specs_round_trip_through_json():
    model = ModelSpec("EleutherAI/pythia-70m", revision="abc123", dtype="bfloat16", device="cpu")
    spec = EvalSpec(tasks=["kbit_choice", "piqa"], num_fewshot=2, limit=10, batch_size=4, seed=7, log_samples=True)
    assert ModelSpec.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    again = EvalSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.tasks == ("kbit_choice", "piqa")


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: ModelSpec(""), "non-empty"),
        (lambda: ModelSpec("m", dtype="int4"), "dtype='int4'"),
        (lambda: ModelSpec("m", device="tpu"), "device='tpu'"),
        (lambda: EvalSpec(tasks=()), "at least one"),
        (lambda: EvalSpec(batch_size=0), "batch_size=0"),
        (lambda: EvalSpec(limit=0), "limit=0"),
        (lambda: EvalSpec(num_fewshot=-1), "num_fewshot=-1"),
        (lambda: EvalSpec.from_dict({"tasks": ["x"], "shots": 3}), "unknown field(s) shots"),
    ],
)
def test_bad_specs_name_the_problem(make, words):
    with pytest.raises(ValueError, match=None) as info:
        make()
    assert words in str(info.value)


def test_run_result_round_trips_and_finds_metrics():
    result = RunResult(config={"bits": 16}, status="done",
                       metrics=[{"task": "kbit_choice", "metric": "acc", "value": 0.5, "stderr": 0.1}])
    assert RunResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert result.metric("kbit_choice", "acc") == 0.5
    assert result.metric("kbit_choice", "acc_norm") is None

"""`RunSpec` / `RunEval`: a run's wire format, typed; `to_dict` is exactly the JSON the queue stores
and `from_dict` its inverse, for every shape a run can take (load settings, placement hint,
calibration, none of them)."""

import pytest

from kbit.family.members import family_members
from kbit.kernels.config import QuantConfig
from kbit.sweeps import expand_runs, parse_sweep
from kbit.sweeps.evalspec import Calibration, EvalSpec
from kbit.sweeps.runspec import CALIBRATION_KEY, LOAD_KEY, RunEval, RunSpec

SWEEP = ("models:\n  - {model: facebook/opt-66b, dtype: fp16, device_map: auto, memory_gb: 150}\n"
         "  - {model: facebook/opt-125m, memory_gb: 1.5}\n  - EleutherAI/pythia-70m\n"
         "grid: {bits: [3, 4], dtypes: [nf], blocksizes: [64], methods: [rtn, gptq]}\ntasks: [piqa]\n"
         "calibration: {samples: 16, seq_len: 64, source: bundled, seed: 2}\n")


def runs():
    sweep = parse_sweep(SWEEP, source="s.yaml", default_name="t", family_members=family_members)
    return expand_runs(sweep, numerics_version="1")


def test_every_run_round_trips_exactly():
    found = runs()
    assert len(found) == 3 * 5
    for run in found:
        spec = RunSpec.from_dict(run)
        assert spec.to_dict() == run and list(spec.to_dict()) == list(run)
        assert RunEval.from_dict(run["eval"]).to_dict() == run["eval"]


def test_the_eval_field_carries_load_hint_and_calibration_apart():
    big = RunEval.from_dict(next(r for r in runs() if r["model"] == "facebook/opt-66b")["eval"])
    assert big.load == {"dtype": "float16", "device_map": "auto"} and big.memory_gb == 150
    assert big.memory_bytes == 150 * 2**30 and big.calibration == Calibration(16, 64, "bundled", 2)
    assert big.model_spec("facebook/opt-66b").device_map == "auto"
    plain = RunEval(EvalSpec(("piqa",)))
    assert plain.to_dict() == EvalSpec(("piqa",)).to_dict()  # nothing added when nothing applies
    assert LOAD_KEY not in plain.to_dict() and CALIBRATION_KEY not in plain.to_dict()


def test_a_label_other_than_the_configs_survives():
    spec = RunSpec("m", "main", "m", QuantConfig(4, "nf", 64), RunEval(EvalSpec(("piqa",))), "k", label="imported")
    assert RunSpec.from_dict(spec.to_dict()).label == "imported"
    assert RunSpec("m", "main", "m", QuantConfig(4, "nf", 64), RunEval(EvalSpec(("piqa",))), "k").label == "nf4-b64"


def test_unknown_load_settings_are_refused():
    with pytest.raises(ValueError, match="unknown setting"):
        RunEval.from_dict({"tasks": ["piqa"], LOAD_KEY: {"dtype": "float16", "devise_map": "auto"}})

"""GPTQ in the sweep language: QuantConfig's method (label, dict, cache key), the `methods` grid
axis, the sweep's `calibration` (defaults, its rules at their lines) and how both reach the worker."""

import json

import pytest

from kbit.kernels import QuantConfig
from kbit.sweeps import Sweep, SweepError, parse_sweep
from kbit.sweeps.evalspec import Calibration
from kbit.sweeps.expand import cache_key, expand_runs
from kbit.sweeps.runspec import RunEval


def parse(text):
    return parse_sweep(text, source="s.yaml", default_name="t")


GPTQ = """\
models: [EleutherAI/pythia-70m]
grid: {bits: [3, 4], dtypes: [nf], blocksizes: [64], methods: [rtn, gptq]}
tasks: [piqa]
"""


def test_method_defaults_to_round_to_nearest_and_only_gptq_shows_in_the_label():
    assert QuantConfig(3, "nf", 64).method == "rtn"
    assert QuantConfig(3, "nf", 64).label() == "nf3-b64"
    assert QuantConfig(3, "nf", 64, method="gptq").label() == "nf3-b64-gptq"
    assert QuantConfig(3, "int", None, outlier_fraction=0.02, method="gptq").label() == "int3-bT-o2%-gptq"
    assert QuantConfig(4, "fp", 64, method="gptq").label() == "fp4e2-b64-gptq"
    assert QuantConfig(16, method="gptq") == QuantConfig(16)  # the baseline has no rounding method


@pytest.mark.parametrize("method", ["GPTQ", "awq", None, 1])
def test_an_unknown_method_is_refused_by_the_dataclass(method):
    with pytest.raises(ValueError, match="QuantConfig.method=.* is not allowed; use one of rtn, gptq"):
        QuantConfig(4, "nf", 64, method=method)


def test_dicts_round_trip_and_old_dicts_still_load():
    for cfg in (QuantConfig(3, "nf", 64, method="gptq"), QuantConfig(4, "fp", None), QuantConfig(16)):
        assert QuantConfig.from_dict(cfg.to_dict()) == cfg
        assert QuantConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = {"bits": 4, "dtype": "nf", "blocksize": 64, "exponent_bits": None, "outlier_fraction": 0.0}
    assert QuantConfig.from_dict(old) == QuantConfig(4, "nf", 64)
    assert QuantConfig(4, "nf", 64).to_dict() == old  # round to nearest: the dict it had before GPTQ
    assert QuantConfig(4, "nf", 64, method="gptq").to_dict() == {**old, "method": "gptq"}
    assert QuantConfig.from_dict({**old, "method": "rtn"}) == QuantConfig(4, "nf", 64)


def test_round_to_nearest_keeps_its_key_and_gptq_has_its_own():
    before_gptq = '{"bits":4,"blocksize":64,"dtype":"nf","exponent_bits":null,"outlier_fraction":0.0}'
    assert QuantConfig(4, "nf", 64).key() == before_gptq  # cached results of older runs still match
    assert QuantConfig(4, "nf", 64, method="gptq").key() != before_gptq
    assert '"method":"gptq"' in QuantConfig(4, "nf", 64, method="gptq").key()


def test_the_cache_key_holds_the_method_and_for_gptq_the_calibration():
    ev, rtn, gptq = {"tasks": ["piqa"]}, QuantConfig(3, "nf", 64), QuantConfig(3, "nf", 64, method="gptq")
    calibration, other = Calibration().to_dict(), Calibration(samples=32).to_dict()
    assert cache_key("m", "main", rtn, ev, "1") != cache_key("m", "main", gptq, ev, "1", calibration=calibration)
    assert cache_key("m", "main", gptq, ev, "1", calibration=calibration) != cache_key(
        "m", "main", gptq, ev, "1", calibration=other)
    assert cache_key("m", "main", rtn, ev, "1") == cache_key("m", "main", rtn, ev, "1", calibration=calibration)


def test_the_methods_axis_expands_and_gptq_gets_the_default_calibration():
    sweep = parse(GPTQ)
    assert [c.label() for c in sweep.configs] == ["16bit", "nf3-b64", "nf4-b64", "nf3-b64-gptq", "nf4-b64-gptq"]
    assert sweep.calibration == Calibration(samples=128, seq_len=512, source="bundled", seed=0)
    assert Sweep.from_spec(sweep.spec()) == sweep
    assert sweep.spec()["calibration"] == Calibration().to_dict()


def test_calibration_reaches_every_run_of_the_sweep_and_only_gptq_keys_hold_it():
    text = GPTQ + "calibration: {samples: 16, seq_len: 64, source: ./calib.txt, seed: 3}\n"
    sweep = parse(text)
    runs = {r["label"]: r for r in expand_runs(sweep, numerics_version="1")}
    for run in runs.values():  # one group: RTN and GPTQ runs share one load of the model
        evaluation = RunEval.from_dict(run["eval"])
        assert evaluation.calibration == Calibration(16, 64, "./calib.txt", 3)
        assert evaluation.eval == sweep.eval and evaluation.load == {}
    plain = {r["label"]: r for r in expand_runs(parse(GPTQ.replace(", gptq", "")), numerics_version="1")}
    assert runs["nf3-b64"]["cache_key"] == plain["nf3-b64"]["cache_key"]  # calibration never moves an RTN key
    default = {r["label"]: r for r in expand_runs(parse(GPTQ), numerics_version="1")}
    assert runs["nf3-b64-gptq"]["cache_key"] != default["nf3-b64-gptq"]["cache_key"]


def test_a_sweep_without_gptq_has_the_spec_and_runs_it_had():
    sweep = parse(GPTQ.replace(", gptq", ""))
    assert sweep.calibration is None and "calibration" not in sweep.spec()
    assert all("calibration" not in run["eval"] for run in expand_runs(sweep, numerics_version="1"))
    assert all("method" not in json.loads(c.key()) for c in sweep.configs)


BAD = {
    "unknown method": ("models: [a]\ngrid:\n  bits: [3]\n  dtypes: [nf]\n  blocksizes: [64]\n  methods: [rtn, gtpq]\n"
                       "tasks: [x]\n", 6, ["grid.methods[1]", "'gtpq' is not allowed", "did you mean 'gptq'"]),
    "calibration without gptq": ("models: [a]\ngrid: {bits: [3], dtypes: [nf], blocksizes: [64]}\ntasks: [x]\n"
                                 "calibration: {samples: 16}\n", 4, ["calibration", "only GPTQ uses calibration text"]),
    "bad calibration values": (GPTQ + "calibration:\n  samples: 0\n  seq_len: 100000\n  seed: -1\n", 5,
                               ["calibration.samples: 0 is not allowed", "calibration.seq_len: 100000",
                                "calibration.seed: -1"]),
    "unknown calibration key": (GPTQ + "calibration: {sample: 16}\n", 4, ["calibration.sample", "did you mean 'samples'"]),
    "calibration not a mapping": (GPTQ + "calibration: bundled\n", 4, ["calibration: must be a mapping"]),
    "empty source": (GPTQ + "calibration: {source: ''}\n", 4, ["calibration.source", "bundled, a path to a text file"]),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_gptq_settings_are_named_at_their_line(kind):
    text, line, words = BAD[kind]
    with pytest.raises(SweepError) as info:
        parse(text)
    message = str(info.value)
    assert f"line {line}:" in message, message
    for word in words:
        assert word in message, f"{kind}: {word!r} not in {message!r}"


def test_the_scheduler_refuses_what_the_reader_refuses():
    spec = parse(GPTQ).spec()
    with pytest.raises(SweepError, match="calibration: only GPTQ"):
        Sweep.from_spec(dict(spec, configs=[QuantConfig(3, "nf", 64).to_dict()]))
    with pytest.raises(SweepError, match="samples"):
        Sweep.from_spec(dict(spec, calibration={"samples": 0}))

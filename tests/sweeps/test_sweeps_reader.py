"""Sweep files: parsing, grid expansion, cache keys, and every kind of bad file reported at once."""


import pytest

from kbit.kernels import QuantConfig
from kbit.sweeps import Sweep, SweepError, load_sweep, parse_sweep
from kbit.sweeps.expand import cache_key, expand_runs
from kbit.sweeps.modelids import model_family
from tests.support.paths import EXAMPLES, example_sweeps

FAMILIES = {"demo": ["kbit/demo/s1", "kbit/demo/s2"], "micro": ["kbit/micro/m1"]}


def members(name):
    return FAMILIES[name]


def parse(text, default_name="t"):
    return parse_sweep(text, source="s.yaml", default_name=default_name, family_members=members)


GOOD = """\
name: small
team: nlp
models:
  - EleutherAI/pythia-70m
  - {model: EleutherAI/pythia-160m, revision: step1000}
  - family: demo
grid:
  bits: [3, 4]
  dtypes: [int, fp]
  blocksizes: [64, null]
tasks: [piqa, hellaswag]
eval: {limit: 20, batch_size: 4}
"""


def test_good_sweep_expands_to_models_times_configs_with_one_baseline():
    sweep = parse(GOOD)
    assert sweep.name == "small" and sweep.team == "nlp"
    assert [m.model for m in sweep.models] == [
        "EleutherAI/pythia-70m", "EleutherAI/pythia-160m", "kbit/demo/s2", "kbit/demo/s1"]  # a family: largest first
    assert sweep.models[1].revision == "step1000"
    assert [m.family for m in sweep.models] == ["pythia", "pythia", "kbit-demo", "kbit-demo"]
    # baseline once + 2 bits x 2 dtypes x 2 blocksizes
    assert len(sweep.configs) == 1 + 8
    assert sweep.configs[0] == QuantConfig(bits=16)
    assert QuantConfig(bits=3, dtype="fp", blocksize=None) in sweep.configs
    assert sweep.eval.to_dict() == {"tasks": ["piqa", "hellaswag"], "num_fewshot": 0, "limit": 20, "batch_size": 4,
                                    "seed": 1234, "log_samples": False}
    assert sweep.n_runs == 4 * 9
    assert Sweep.from_spec(sweep.spec()) == sweep


def test_runs_carry_family_label_and_distinct_cache_keys():
    sweep = parse(GOOD)
    runs = expand_runs(sweep, numerics_version="0.1.0+gabc")
    assert len(runs) == sweep.n_runs
    assert len({r["cache_key"] for r in runs}) == len(runs)
    assert runs[0]["label"] == "16bit" and runs[1]["label"] == "int3-b64"
    assert {r["family"] for r in runs} == {"pythia", "kbit-demo"}


def test_cache_key_changes_with_every_ingredient():
    cfg = QuantConfig(bits=4, dtype="nf", blocksize=64)
    ev = {"tasks": ["piqa"], "limit": None}
    base = cache_key("m", "main", cfg, ev, "1")
    assert base == cache_key("m", "main", QuantConfig(bits=4, dtype="nf", blocksize=64), dict(ev), "1")
    variants = [
        cache_key("m2", "main", cfg, ev, "1"),
        cache_key("m", "v2", cfg, ev, "1"),
        cache_key("m", "main", QuantConfig(bits=4, dtype="nf", blocksize=128), ev, "1"),
        cache_key("m", "main", cfg, {"tasks": ["piqa"], "limit": 10}, "1"),
        cache_key("m", "main", cfg, ev, "2"),
    ]
    assert len({base, *variants}) == 6


def test_baseline_false_and_exponent_bits_only_shape_fp():
    sweep = parse("models: [m]\ngrid: {bits: [4], dtypes: [fp, int], blocksizes: [64], exponent_bits: [2, 3]}\n"
                  "baseline: false\ntasks: [piqa]\n", default_name="x")
    labels = sorted(c.label() for c in sweep.configs)
    assert labels == ["fp4e2-b64", "fp4e3-b64", "int4-b64"]
    assert sweep.name == "x"


def test_model_family_names():
    assert model_family("EleutherAI/pythia-410m-deduped") == "pythia"
    assert model_family("facebook/opt-1.3b") == "opt"
    assert model_family("kbit/demo/s1") == "kbit-demo"
    assert model_family("meta-llama/Llama-2-7b-hf") == "llama-2"
    assert model_family("gpt2-medium") == "gpt2"
    assert model_family("/models/bloom-560m/") == "bloom"


def test_example_sweeps_are_valid():
    from kbit.sweeps.reader import load_sweep as load

    pythia = load(EXAMPLES / "pythia.yaml", family_members=members)
    assert [m.model.split("-")[-1] for m in pythia.models] == ["70m", "160m", "410m", "1b", "1.4b"]
    assert list(pythia.eval.tasks) == ["lambada_openai", "piqa", "hellaswag", "winogrande"]
    demo = load(EXAMPLES / "demo.yaml", family_members=members)
    assert {c.bits for c in demo.configs} == {3, 4, 5, 6, 8, 16}
    assert {c.dtype for c in demo.configs if c.bits < 16} == {"int", "fp", "nf", "quantile", "dynamic"}
    assert {c.blocksize for c in demo.configs if c.bits < 16} == {64, 1024}
    assert len(demo.configs) == 5 * 5 * 2 + 1
    assert [m.model for m in demo.models] == FAMILIES["demo"][::-1]  # largest first


# -- bad files: (yaml, the line the problem is on, words the message must contain) -----------------

BAD = {
    "not yaml": ("models: [a, b\ntasks: [x]\n", 2, ["not valid YAML"]),
    "unknown top key": ("modles: [a]\ntasks: [x]\n", 1, ["modles", "did you mean 'models'", "allowed keys"]),
    "bits out of range": ("models: [a]\ngrid:\n  bits: [4, 9]\n  dtypes: [nf]\n  blocksizes: [64]\ntasks: [x]\n",
                          3, ["grid.bits[1]", "9 is not allowed", "2..8 or 16"]),
    "unknown dtype": ("models: [a]\ngrid:\n  bits: [4]\n  dtypes:\n    - nf\n    - flaot\n  blocksizes: [64]\ntasks: [x]\n",
                      6, ["grid.dtypes[1]", "'flaot'", "int, fp, nf, quantile, dynamic"]),
    "blocksize not a power of two": ("models: [a]\ngrid: {bits: [4], dtypes: [nf], blocksizes: [100]}\ntasks: [x]\n",
                                     2, ["100 is not allowed", "power of two from 32 to 4096"]),
    "fp exponent too wide": ("models: [a]\ngrid: {bits: [3], dtypes: [fp], blocksizes: [64], exponent_bits: [3]}\n"
                             "tasks: [x]\n", 2, ["grid.exponent_bits: 3 is not allowed for 3-bit fp", "use 1..2"]),
    "missing models": ("name: x\ntasks: [x]\n", None, ["missing `models:`"]),
    "missing name": ("models: [a]\ntasks: [x]\n", None, ["missing `name:`"]),
    "empty models": ("models: []\ntasks: [x]\n", 1, ["models: must be a non-empty list"]),
    "duplicate key": ("models: [a]\ntasks: [x]\ntasks: [y]\n", 3, ["tasks: given twice"]),
    "unknown family": ("models:\n  - family: gigantic\ntasks: [x]\n", 2, ["'gigantic' is not a bundled model family"]),
    "unknown bundled member": ("models: [kbit/demo/s9]\ntasks: [x]\n", 1, ["not in the bundled family 'demo'",
                                                                           "kbit/demo/s1"]),
    "seeds not a count": ("models:\n  - {family: demo, seeds: 0}\ntasks: [x]\n", 2,
                          ["models[0].seeds", "whole number from 1 to 20", "not 0"]),
    "seeds of one model": ("models:\n  - {model: kbit/demo/s1, seeds: 2}\ntasks: [x]\n", 2,
                           ["models[0].seeds: goes with `family:`", "kbit/demo/s1@seed2"]),
    "seed one spelled out": ("models: [kbit/demo/s2@seed1]\ntasks: [x]\n", 1, ["seed 1 is the family's own",
                                                                                "write 'kbit/demo/s2'"]),
    "seed of an unknown member": ("models: [kbit/demo/s9@seed2]\ntasks: [x]\n", 1, ["not in the bundled family"]),
    "quantize an unknown end": ("models: [a]\ngrid: {bits: [4], dtypes: [nf], blocksizes: [64]}\nquantize:\n"
                                "  heads: true\ntasks: [x]\n", 4, ["quantize.heads: unknown key", "did you mean 'head'"]),
    "bad eval values": ("models: [a]\ntasks: [x]\neval:\n  batch_size: 0\n", 4,
                        ["eval.batch_size", "0 is not allowed", "1 to 4096"]),
    "negative limit": ("models: [a]\ntasks: [x]\neval: {limit: -5}\n", 3, ["eval.limit", "-5"]),
    "task not a name": ("models: [a]\ntasks: [3]\n", 2, ["tasks[0]", "is not a task name"]),
    "empty grid list": ("models: [a]\ngrid: {bits: [], dtypes: [nf], blocksizes: [64]}\ntasks: [x]\n", 2,
                        ["grid.bits: is empty"]),
    "priority not a number": ("models: [a]\ntasks: [x]\npriority: high\n", 3, ["priority", "whole number"]),
    "top level a list": ("- a\n- b\n", None, ["a sweep file is a mapping"]),
    "empty file": ("", None, ["the file is empty"]),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_sweep_gets_a_clear_message_with_its_line(kind):
    text, line, words = BAD[kind]
    with pytest.raises(SweepError) as info:
        parse(text, default_name=None if kind == "missing name" else "t")
    message = str(info.value)
    assert message.startswith("s.yaml")
    if line is not None:
        assert f"line {line}:" in message, message
    for word in words:
        assert word in message, f"{kind}: {word!r} not in {message!r}"


def test_every_problem_is_reported_in_one_message():
    text = (
        "name: multi\n"                        # 1
        "models: [a]\n"                         # 2
        "grid:\n"                               # 3
        "  bits: [4, 11]\n"                     # 4
        "  dtypes: [nf, nf9]\n"                 # 5
        "  blocksizes: [64]\n"                  # 6
        "  blocksize: [128]\n"                  # 7
        "tasks: [piqa]\n"                       # 8
        "eval: {seed: -1, few_shot: 2}\n"       # 9
    )
    with pytest.raises(SweepError) as info:
        parse(text)
    err = info.value
    assert len(err.problems) == 5, err.problems
    lines = [p.split(":")[0] for p in err.problems]
    assert lines == ["line 4", "line 5", "line 7", "line 9", "line 9"]
    assert "s.yaml has 5 problems" in str(err)
    assert any("did you mean 'blocksizes'" in p for p in err.problems)
    assert any("did you mean 'num_fewshot'" in p for p in err.problems)


def test_missing_file_is_a_sweep_error(tmp_path):
    with pytest.raises(SweepError, match="file not found"):
        load_sweep(tmp_path / "nope.yaml", family_members=members)


# -- one validation: what the reader accepts, the scheduler and the workers accept -----------------


def test_a_fractional_limit_is_a_share_of_the_documents_and_reaches_the_worker_unchanged():
    from kbit.sweeps import EvalSpec

    sweep = parse("models: [a]\ntasks: [piqa]\neval: {limit: 0.5}\n")
    assert sweep.eval.limit == 0.5
    [run] = [r for r in expand_runs(Sweep.from_spec(sweep.spec()), numerics_version="1") if r["config"]["bits"] == 16]
    assert EvalSpec.from_dict(run["eval"]).limit == 0.5  # what kbit.workers.evaluate_group builds


@pytest.mark.parametrize("limit", ["1.0", "0", "1.5", "true", "-0.5"])
def test_a_limit_lm_eval_would_misread_is_refused_at_submit(limit):
    # 1.0 would be read by lm-eval as one document, not all of them
    with pytest.raises(SweepError, match="eval.limit"):
        parse(f"models: [a]\ntasks: [piqa]\neval: {{limit: {limit}}}\n")


def test_every_run_of_every_example_rebuilds_as_the_scheduler_and_workers_build_it():
    from kbit.sweeps.runspec import RunEval, RunSpec

    for path in example_sweeps():
        sweep = load_sweep(path, family_members=members)
        assert Sweep.from_spec(sweep.spec()) == sweep, path
        for run in expand_runs(sweep, numerics_version="1"):
            assert QuantConfig.from_dict(run["config"]).label() == run["label"]
            assert RunSpec.from_dict(run).to_dict() == run  # the stored JSON, exactly
            evaluation = RunEval.from_dict(run["eval"])  # as kbit.workers.evaluate_group reads it
            assert evaluation.model_spec(run["model"], run["revision"]).dtype in ("auto", *evaluation.load.values())


def test_a_spec_that_breaks_a_rule_is_refused_by_the_scheduler_with_a_sweep_error():
    spec = parse(GOOD).spec()
    bad = dict(spec, eval=dict(spec["eval"], limit=0), priority="high")
    with pytest.raises(SweepError) as info:
        Sweep.from_spec(bad)
    assert "limit" in str(info.value)
    with pytest.raises(SweepError, match="unknown field"):
        Sweep.from_spec(dict(spec, configs=[{"bits": 4, "colour": "red"}]))


def test_a_sweep_error_survives_pickling_as_itself():
    import pickle

    err = SweepError("s.yaml", ["line 1: one", "line 2: two"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is SweepError and back.problems == err.problems and str(back) == str(err)


# -- bounded input: every bad file is one clear error, in bounded time and memory -------------------


def test_yaml_aliases_are_refused_before_anything_expands():
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    for text in (laughs + "models: [m]\ntasks: [x]\n", "models: &m [*m]\ntasks: [x]\n"):
        with pytest.raises(SweepError, match=r"line \d+: YAML aliases \(\*\w\) are not allowed"):
            parse(text)


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("models:\n" + "  - m\n" * 300_000 + "tasks: [x]\n")
    with pytest.raises(SweepError, match=r"is 1,8\d\d,\d\d\d bytes; a sweep file may have at most 1,000,000"):
        load_sweep(path, family_members=members)


def test_runs_per_sweep_are_capped_by_the_operator(monkeypatch):
    monkeypatch.setenv("KBIT_MAX_RUNS_PER_SWEEP", "100")
    models = ", ".join(f"m{i}" for i in range(60))
    with pytest.raises(SweepError, match=r"60 models x 3 configs = 180 runs; the limit is 100 per sweep"):
        parse(f"models: [{models}]\ngrid: {{bits: [4], dtypes: [nf, int], blocksizes: [64]}}\ntasks: [x]\n")
    outliers = ", ".join(str(i / 1000) for i in range(200))
    with pytest.raises(SweepError, match=r"grid: spans 200 configs; a sweep may have at most 100 runs"):
        parse(f"models: [m]\ngrid: {{bits: [4], dtypes: [nf], blocksizes: [64], outlier_fractions: [{outliers}]}}\n"
              "tasks: [x]\n")
    monkeypatch.delenv("KBIT_MAX_RUNS_PER_SWEEP")
    spec = parse(f"models: [{models}]\ntasks: [x]\n").spec()
    monkeypatch.setenv("KBIT_MAX_RUNS_PER_SWEEP", "10")
    with pytest.raises(SweepError, match="the limit is 10 per sweep"):
        Sweep.from_spec(spec)  # the scheduler applies the same cap


def test_priority_and_name_are_bounded():
    with pytest.raises(SweepError, match=r"priority: must be a whole number from -10 to 10.*not 2147483648"):
        parse("models: [m]\ntasks: [x]\npriority: 2147483648\n")
    with pytest.raises(SweepError, match="name: is 300 characters long; use at most 200"):
        parse(f"name: {'n' * 300}\nmodels: [m]\ntasks: [x]\n")


def test_thousands_of_bad_values_give_one_bounded_message():
    values = ", ".join(str(900 + i) for i in range(5000))
    with pytest.raises(SweepError) as info:
        parse(f"models: [m]\ngrid: {{bits: [{values}], dtypes: [nf], blocksizes: [64]}}\ntasks: [x]\n")
    assert len(info.value.problems) == 41 and "and 4,960 more problems" in info.value.problems[-1]


def test_the_examples_check_fails_when_the_examples_are_gone(tmp_path, monkeypatch):
    """A test over every example sweep must not pass on an empty folder."""
    import tests.support.paths as paths

    monkeypatch.setattr(paths, "EXAMPLES", tmp_path)
    with pytest.raises(AssertionError, match="examples missing"):
        paths.example_sweeps()


def test_seeds_expand_every_member_of_a_family_and_keep_the_keys_of_seed_one():
    """`seeds: 3` is every member with seeds 1..3 (seed 1 the plain id, so a sweep without `seeds:`
    keeps its runs and cache keys); every seed is one family on the frontier."""
    text = "name: s\nmodels:\n  - {family: demo, seeds: 3}\ngrid: {bits: [4], dtypes: [nf], blocksizes: [64]}\ntasks: [x]\n"
    sweep = parse(text)
    assert [m.model for m in sweep.models] == [
        "kbit/demo/s2", "kbit/demo/s2@seed2", "kbit/demo/s2@seed3", "kbit/demo/s1", "kbit/demo/s1@seed2", "kbit/demo/s1@seed3"]
    assert {m.family for m in sweep.models} == {"kbit-demo"}
    assert Sweep.from_spec(sweep.spec()) == sweep
    plain = parse(text.replace(", seeds: 3", ""))
    one = parse(text.replace("seeds: 3", "seeds: 1"))
    keys = {(r["model"], r["cache_key"]) for r in expand_runs(sweep, "v")}
    assert {(r["model"], r["cache_key"]) for r in expand_runs(plain, "v")} == {(r["model"], r["cache_key"]) for r in expand_runs(one, "v")}
    assert {(r["model"], r["cache_key"]) for r in expand_runs(plain, "v")} < keys
    assert len({k for _, k in keys}) == 6 * 2  # every (model, config) its own measurement
    seeded = next(r for r in expand_runs(sweep, "v") if r["model"] == "kbit/demo/s1@seed2")
    config = QuantConfig.from_dict(seeded["config"])
    # trained here whatever KBIT_FAMILY_WEIGHTS says: its key says so, like any family built here
    assert seeded["cache_key"] == cache_key("kbit/demo/s1@seed2", "main", config, sweep.eval.to_dict(), "v+family-built-here")

"""`quantize: {embeddings, head}` in a sweep file: read at its lines, carried by every quantized
config through the spec and the run's wire format, and in the cache key only when set. The pinned
keys below were computed by the code before the option existed (commit 18b3c0b)."""

import hashlib

import pytest

from kbit.kernels import QuantConfig
from kbit.sweeps import Sweep, SweepError, parse_sweep
from kbit.sweeps.expand import expand_runs
from kbit.sweeps.runspec import RunSpec

SWEEP = """name: pinned
models:
  - gpt2
  - {model: EleutherAI/pythia-70m, dtype: fp16}
grid:
  bits: [3, 4, 16]
  dtypes: [int, fp, nf, quantile, dynamic]
  blocksizes: [64, null]
  outlier_fractions: [0.0, 0.02]
  methods: [rtn, gptq]
tasks: [piqa, lambada_openai]
eval: {num_fewshot: 1, limit: 50}
"""
PINNED_INT3 = "35d04ea067b6ecd19754f54d2879b8f3c84e7d7d92b8ac297ad5bce806ea369c"  # gpt2, int3-b64
PINNED_ALL = "4638285fd03464ee6992113259a7abafd61bdfc3feb336336a81e3ee2b5d5a96"  # sha256 of all 162 keys in order


def keys(text: str) -> list[dict]:
    return expand_runs(parse_sweep(text), numerics_version="pinned")


def digest(runs: list[dict]) -> str:
    return hashlib.sha256("".join(r["cache_key"] for r in runs).encode()).hexdigest()


def rtn_only(text: str) -> str:
    return text.replace("methods: [rtn, gptq]", "methods: [rtn]")


def test_the_keys_of_a_sweep_without_the_option_are_the_ones_it_always_had():
    runs = keys(SWEEP)
    assert len(runs) == 162 and runs[1]["label"] == "int3-b64" and runs[1]["cache_key"] == PINNED_INT3
    assert digest(runs) == PINNED_ALL
    assert all("embeddings" not in r["config"] and "head" not in r["config"] for r in runs)
    off = SWEEP + "quantize: {embeddings: false, head: false}\n"  # said, but off: the same runs
    assert keys(off) == runs


def test_the_option_gives_every_quantized_run_a_new_key_and_label_and_leaves_the_baseline():
    plain = keys(rtn_only(SWEEP))
    ends = keys(rtn_only(SWEEP) + "quantize: {embeddings: true, head: true}\n")
    assert len(ends) == len(plain)
    for before, after in zip(plain, ends):
        if before["config"]["bits"] == 16:
            assert after == before
            continue
        assert after["cache_key"] != before["cache_key"]
        assert after["label"] == before["label"] + "-emb-head"
        assert after["config"] == {**before["config"], "embeddings": True, "head": True}
    head_only = keys(rtn_only(SWEEP) + "quantize: {head: true}\n")
    assert {r["cache_key"] for r in head_only}.isdisjoint(r["cache_key"] for r in ends if r["config"]["bits"] != 16)


def test_the_option_travels_through_the_spec_and_the_wire_format():
    sweep = parse_sweep(rtn_only(SWEEP) + "quantize:\n  embeddings: true\n  head: true\n")
    assert Sweep.from_spec(sweep.spec()) == sweep
    run = RunSpec.from_dict(expand_runs(sweep, numerics_version="x")[1])
    assert run.config == QuantConfig(3, "int", 64, embeddings=True, head=True) and run.label == "int3-b64-emb-head"
    assert RunSpec.from_dict(run.to_dict()) == run


@pytest.mark.parametrize("block, line, message", [
    ("quantize:\n  embeddings: true\n", 14,
     "quantize.embeddings: True is not allowed with method='gptq': GPTQ calibrates the transformer blocks only"),
    ("quantize:\n  embeddings: false\n  head: yes please\n", 15, "quantize.head: 'yes please' is not allowed; use true or false"),
    ("quantize:\n  head: true\n  embedding: true\n", 15, "quantize.embedding: unknown key (did you mean 'embeddings'?)"),
    ("quantize: [embeddings, head]\n", 13, "quantize: must be a mapping with keys embeddings, head"),
])
def test_a_bad_quantize_key_is_named_at_its_line(block, line, message):
    with pytest.raises(SweepError) as info:
        parse_sweep(SWEEP + block)
    assert any(p.startswith(f"line {line}: {message}") for p in info.value.problems), info.value.problems

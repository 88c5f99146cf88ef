"""A config that quantizes the embeddings and head, run by the worker on the micro family: the
stored bits are what the model then stores (the 16-bit share down to norms only), the run is
evaluated as any other, and half of a tied pair fails that config alone, as not quantizable."""

import math

from kbit.kernels import QuantConfig
from kbit.sweeps import EvalSpec, ModelSpec
from kbit.workers import evaluate_configs

FAST = EvalSpec(tasks=("kbit_heldout",), limit=4, batch_size=16)
MODEL = "kbit/micro/m2"


def sixteen_bit_share(bits: dict) -> float:
    return (bits["n_params"] - bits["n_quantized"]) * 16 / bits["total_bits"]


def test_the_stored_bits_charge_the_quantized_ends_and_a_tied_half_fails_alone(micro):
    configs = [QuantConfig(16), QuantConfig(4, "nf", 64), QuantConfig(4, "nf", 64, embeddings=True, head=True),
               QuantConfig(4, "nf", 64, head=True)]
    base, plain, ends, half = evaluate_configs(ModelSpec(MODEL), configs, FAST)
    assert (base.status, plain.status, ends.status) == ("done", "done", "done"), ends.error
    assert ends.config == {**plain.config, "embeddings": True, "head": True}
    assert ends.bits["n_params"] == plain.bits["n_params"] == base.bits["n_params"]
    table = ends.bits["n_quantized"] - plain.bits["n_quantized"]  # the tied table, counted once
    assert table > 0
    assert math.isclose(plain.bits["total_bits"] - ends.bits["total_bits"], table * (16 - 4.25))
    assert sixteen_bit_share(ends.bits) < 0.1 < sixteen_bit_share(plain.bits)
    bpb = [r.metric("kbit_heldout", "bits_per_byte") for r in (base, plain, ends)]
    assert all(math.isfinite(v) and v > 0 for v in bpb) and bpb[2] != bpb[1]
    assert half.status == "failed" and half.error_type == "not_quantizable"
    assert "one tied tensor; quantize both" in half.error

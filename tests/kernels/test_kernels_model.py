"""Whole-model quantization on a tiny randomly initialised Llama (built from a config, no download)."""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from kbit.kernels import BitReport, QuantConfig, QuantLinear, quantize_model_, restore_model_
from kbit.kernels.outliers import expected_overhead, outlier_dims, proxy_sources


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def linear_weights(model):
    return sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head")


def test_baseline_is_a_no_op_with_a_report(llama, ids):
    before = logits(llama, ids)
    report = quantize_model_(llama, QuantConfig(16))
    n = sum(p.numel() for p in llama.parameters())
    assert isinstance(report, BitReport)
    assert report.to_dict() == {
        "config": QuantConfig(16).to_dict(), "n_params": n, "n_quantized": 0, "n_layers": 0,
        "n_outlier_params": 0, "bits_per_param": 16.0, "total_bits": 16.0 * n, "by_kind": {},
    }  # fmt: skip
    assert not any(isinstance(m, QuantLinear) for m in llama.modules())
    assert torch.equal(logits(llama, ids), before)


def test_report_follows_the_bit_formula(llama):
    n = sum(p.numel() for p in llama.parameters())
    n_linear = linear_weights(llama)
    report = quantize_model_(llama, QuantConfig(4, "nf", 64))
    try:
        assert report.n_params == n
        assert report.n_quantized == n_linear
        assert report.n_layers == 14 and report.bits_per_param == 4.25
        assert report.total_bits == report.n_quantized * 4.25 + (n - report.n_quantized) * 16
        assert isinstance(llama.lm_head, nn.Linear)  # skipped by default
        stored = sum(m.codes.numel() * 8 + m.absmax.numel() * 16 for m in llama.modules() if isinstance(m, QuantLinear))
        assert stored == report.n_quantized * 4.25  # the packed buffers really are that size
    finally:
        restore_model_(llama)


def test_restore_is_bit_identical_and_requantize_starts_from_originals(llama, ids):
    state = {k: v.clone() for k, v in llama.state_dict().items()}
    quantize_model_(llama, QuantConfig(3, "int", 64))
    three = logits(llama, ids)
    quantize_model_(llama, QuantConfig(8, "int", 64))  # restores first: quantizes the originals, not 3-bit weights
    quantize_model_(llama, QuantConfig(3, "int", 64))
    assert torch.equal(logits(llama, ids), three)
    assert restore_model_(llama) == 14
    assert all(torch.equal(state[k], v) for k, v in llama.state_dict().items())
    assert restore_model_(llama) == 0


def test_logits_degrade_gracefully_with_fewer_bits(llama, ids):
    ref = logits(llama, ids)
    err = {}
    for bits in (8, 4, 3):
        quantize_model_(llama, QuantConfig(bits, "nf", 64))
        err[bits] = (logits(llama, ids) - ref).abs().mean().item() / ref.abs().mean().item()
    restore_model_(llama)
    assert err[8] < 0.02
    assert err[8] < err[4] < err[3] < 0.5


def test_outliers_are_kept_in_16_bit_and_counted(llama, ids):
    ref = logits(llama, ids)
    plain = quantize_model_(llama, QuantConfig(3, "int", 64))
    plain_err = (logits(llama, ids) - ref).abs().mean()
    restore_model_(llama)
    report = quantize_model_(llama, QuantConfig(3, "int", 64, outlier_fraction=0.05))
    try:
        layer = llama.model.layers[0].mlp.gate_proj
        assert isinstance(layer, QuantLinear) and layer.n_outliers == round(0.05 * 64)
        w = layer.original.weight
        full = layer.dequantized_weight(torch.float32)
        idx = layer.outlier_idx.long()
        assert torch.equal(full[:, idx], w[:, idx].to(torch.float16).float())
        overhead = report.bits_per_param - plain.bits_per_param
        assert overhead > 0 and abs(overhead - expected_overhead(3, 0.05)) < 0.2
        assert (logits(llama, ids) - ref).abs().mean() < plain_err * 1.2
    finally:
        restore_model_(llama)


def test_proxy_sources_follow_the_residual_stream(llama):
    names = [n for n, m in llama.named_modules() if isinstance(m, nn.Linear)]
    src = proxy_sources(llama, names)
    assert src["model.layers.0.self_attn.q_proj"] == "model.embed_tokens"
    assert src["model.layers.0.mlp.gate_proj"] == "model.layers.0.self_attn.o_proj"
    assert src["model.layers.0.mlp.down_proj"] == "model.layers.0.mlp.up_proj"
    assert src["model.layers.0.self_attn.o_proj"] == "model.layers.0.self_attn.v_proj"  # reads V, not the stream
    assert src["model.layers.1.self_attn.k_proj"] == "model.layers.0.mlp.down_proj"


def test_proxy_picks_the_units_with_largest_weight_std(llama):
    o_proj = llama.model.layers[1].self_attn.o_proj
    saved = o_proj.weight.detach().clone()
    try:
        with torch.no_grad():
            o_proj.weight[[5, 40]] *= 20  # two hidden units with 20x weight std, as in the paper
        dims = outlier_dims(llama, ["model.layers.1.mlp.up_proj"], fraction=2 / 64)
        assert dims["model.layers.1.mlp.up_proj"].tolist() == [5, 40]
    finally:
        with torch.no_grad():
            o_proj.weight.copy_(saved)


def test_failed_quantization_leaves_no_half_quantized_model(llama):
    weight = llama.model.layers[1].mlp.up_proj.weight
    saved = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] = float("nan")
    try:
        with pytest.raises(ValueError, match="inf or nan"):
            quantize_model_(llama, QuantConfig(4, "nf", 64))
        assert not any(isinstance(m, QuantLinear) for m in llama.modules())
    finally:
        with torch.no_grad():
            weight[0, 0] = saved


def test_bad_arguments(llama):
    with pytest.raises(TypeError, match="QuantConfig"):
        quantize_model_(llama, {"bits": 4})
    with pytest.raises(TypeError, match="tuple of module names"):
        quantize_model_(llama, QuantConfig(4), skip="lm_head")

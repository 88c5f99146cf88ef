"""Quantizing the model's ends (QuantConfig.embeddings / head): the token embedding really stored
k-bit and looked up from its packed codes (Triton beside the torch reference), a tied head computing
with that one table and charged once, the bits down by exactly what is no longer 16-bit, restore,
refusals, and the checkpoint round trip."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from kbit.kernels import CoverageError, QuantConfig, QuantLinear, load_quantized, quantize_model_, restore_model_, save_quantized
from kbit.kernels.blockwise import dequantize, embedding, quantize
from kbit.kernels.embedding import QuantEmbedding, TiedQuantLinear
from kbit.kernels.model import bit_report

ENDS = dict(embeddings=True, head=True)


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=64, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def micro_model(micro):
    """The bundled micro family's m1 (a tied Llama), as shipped."""
    return AutoModelForCausalLM.from_pretrained(str(micro["kbit/micro/m1"]), dtype=torch.float32).eval()


def ids_for(model, n=48, seed=1):
    return torch.randint(0, model.config.vocab_size, (2, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits, dtype, blocksize", [(3, "int", 64), (4, "nf", 32), (5, "fp", None), (8, "quantile", 128)])
def test_lookup_decodes_the_rows_asked_for_on_both_backends(device, bits, dtype, blocksize):
    table = torch.randn(300, 48, generator=torch.Generator().manual_seed(bits)).to(device)
    qt = quantize(table, QuantConfig(bits, dtype, blocksize), backend="torch")
    ids = torch.randint(0, 300, (3, 7), generator=torch.Generator().manual_seed(2)).to(device)
    dense = dequantize(qt, backend="torch")[ids]
    for backend in ("torch", "triton"):
        rows = embedding(ids, qt, backend=backend)
        assert rows.shape == (3, 7, 48) and rows.dtype == table.dtype
        assert torch.equal(rows, dense), backend
    with pytest.raises(IndexError, match=r"ids must lie in \[0, 300\)"):
        embedding(torch.tensor([300], device=device), qt)


def test_the_micro_models_embedding_is_really_k_bit_and_the_bits_drop_by_its_16_bit_cost(micro_model):
    model = micro_model
    table = model.get_input_embeddings().weight.detach().clone()
    n_table = table.numel()
    plain = quantize_model_(model, QuantConfig(4, "nf", 64))
    try:
        ends = quantize_model_(model, QuantConfig(4, "nf", 64, **ENDS))
        emb, head = model.model.embed_tokens, model.lm_head
        assert isinstance(emb, QuantEmbedding) and isinstance(head, TiedQuantLinear)
        assert head.qtensor.codes is emb.codes  # one quantized tensor for both ends
        model.tie_weights()  # lm-eval calls it on every model: the pair is one tensor already
        assert model.lm_head is head and not hasattr(head, "weight")
        # k-bit for real: every 64-value block of the stored table takes at most 2**4 distinct values
        values = emb.dequantized_weight(torch.float32).reshape(-1, 64)
        assert max(len(torch.unique(block)) for block in values) <= 16
        assert emb.codes.numel() == n_table * 4 // 8  # packed 4-bit codes, two per byte
        # exactly what is no longer stored in 16 bit: the table's 16 bits per value, now 4 + 16/64
        assert ends.n_params == plain.n_params
        assert ends.n_quantized == plain.n_quantized + n_table
        assert plain.total_bits - ends.total_bits == n_table * 16 - n_table * 4.25
        assert ends.by_kind["embedding+head"] == {"n_layers": 2, "n_quantized": n_table, "bits_per_param": 4.25}
        sixteen = lambda r: (r.n_params - r.n_quantized) * 16 / r.total_bits  # noqa: E731
        assert sixteen(ends) < 0.5 * sixteen(plain)
        ids = ids_for(model)
        with torch.no_grad():
            loss = model(ids, labels=ids).loss
        assert math.isfinite(float(loss)) and math.exp(float(loss)) < 10 * model.config.vocab_size
    finally:
        restore_model_(model)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied again
    assert "tie_weights" not in vars(model)  # transformers' own again
    assert torch.equal(model.model.embed_tokens.weight, table)


def test_both_backends_compute_the_same_logits(micro_model, device):
    """The Triton lookup and tied-head GEMM (the interpreter on CPU) compute what the reference does."""
    model = micro_model.to(device)
    ids = ids_for(model, n=16).to(device)
    cfg = QuantConfig(3, "int", 64, **ENDS)
    try:
        quantize_model_(model, cfg, backend="torch")
        with torch.no_grad():
            reference = model(ids).logits
        quantize_model_(model, cfg, backend="triton")
        with torch.no_grad():
            triton = model(ids).logits
    finally:
        restore_model_(model)
        model.to("cpu")
    torch.testing.assert_close(triton, reference, rtol=1e-4, atol=1e-4)


def test_an_untied_head_becomes_its_own_quantized_layer():
    model = tiny_llama(tied=False)
    v, d = model.config.vocab_size, model.config.hidden_size
    plain = quantize_model_(model, QuantConfig(4, "int", 64))
    head_only = quantize_model_(model, QuantConfig(4, "int", 64, head=True))
    assert type(model.lm_head) is QuantLinear and isinstance(model.model.embed_tokens, torch.nn.Embedding)
    assert plain.total_bits - head_only.total_bits == v * d * (16 - 4.25)
    both = quantize_model_(model, QuantConfig(4, "int", 64, **ENDS))
    assert plain.total_bits - both.total_bits == 2 * v * d * (16 - 4.25)
    assert set(both.by_kind) >= {"embedding", "lm_head"}
    restore_model_(model)
    assert type(model.lm_head) is torch.nn.Linear


def test_half_of_a_tied_pair_is_refused_before_anything_changes():
    model = tiny_llama(tied=True)
    for one in ({"embeddings": True}, {"head": True}):
        with pytest.raises(CoverageError, match=r"one tied tensor; quantize both .* or neither"):
            quantize_model_(model, QuantConfig(4, "nf", 64, **one))
        assert not any(isinstance(m, (QuantLinear, QuantEmbedding)) for m in model.modules())


def test_a_model_without_a_token_embedding_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(CoverageError, match="no token embedding"):
        quantize_model_(model, QuantConfig(4, "nf", 64, embeddings=True), skip=())


def test_gptq_refuses_the_ends_and_the_defaults_keep_the_old_dict_and_label():
    with pytest.raises(ValueError, match="GPTQ calibrates the transformer blocks only"):
        QuantConfig(4, "nf", 64, method="gptq", head=True)
    with pytest.raises(ValueError, match="use true or false"):
        QuantConfig(4, "nf", 64, embeddings=1)
    assert QuantConfig(4, "nf", 64).to_dict() == {"bits": 4, "dtype": "nf", "blocksize": 64, "exponent_bits": None,
                                                   "outlier_fraction": 0.0}
    cfg = QuantConfig(4, "nf", 64, **ENDS)
    assert cfg.label() == "nf4-b64-emb-head" and QuantConfig(4, "nf", 64, head=True).label() == "nf4-b64-head"
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg and cfg.key() != QuantConfig(4, "nf", 64).key()
    assert QuantConfig(16, embeddings=True, head=True) == QuantConfig(16)  # the baseline quantizes nothing


@pytest.mark.parametrize("tied", [True, False])
def test_checkpoint_round_trip_stores_the_table_once_and_computes_the_same(tied, tmp_path):
    model = tiny_llama(tied)
    cfg = QuantConfig(4, "quantile", 64, **ENDS)
    report = quantize_model_(model, cfg, backend="torch")
    ids = ids_for(model, n=12)
    with torch.no_grad():
        before = model(ids).logits
    manifest = save_quantized(model, tmp_path / "ckpt")
    assert manifest["format_version"] == 2 and manifest["layers"]["model.embed_tokens"]["kind"] == "embedding"
    assert manifest["tensor_bytes"] * 8 == report.total_bits  # exactly the charged bits
    back = load_quantized(tmp_path / "ckpt", device="cpu", backend="torch")
    assert isinstance(back.model.embed_tokens, QuantEmbedding)
    assert isinstance(back.lm_head, TiedQuantLinear) == tied
    assert bit_report(back, cfg) == report
    with torch.no_grad():
        assert torch.equal(back(ids).logits, before)
    with pytest.raises(ValueError, match="loaded from a kbit checkpoint"):
        restore_model_(back)

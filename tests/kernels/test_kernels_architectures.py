"""The paper's model families for real: tiny randomly initialised GPT-2, OPT, BLOOM, GPT-NeoX
(Pythia) and Llama models built from their transformers configs (no download). Every weight
matrix of every block is quantized, the bits follow the formula, outputs degrade with fewer bits,
and proxy quantization pairs each layer with the producer the architecture map names."""

import warnings

import pytest
import torch
from torch import nn
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)
from transformers.pytorch_utils import Conv1D

from kbit.kernels import CoverageError, QuantConfig, QuantLinear, quantize_model_, restore_model_
from kbit.kernels.architectures import ARCHITECTURES, V_GROUPED, V_OF_CONCAT_QKV, V_OF_HEADWISE_QKV, proxy_plan
from kbit.kernels.outliers import outlier_dims, proxy_sources

VOCAB, HIDDEN, HEADS = 128, 64, 4
BUILDERS = {
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(
        n_layer=2, n_embd=HIDDEN, n_head=HEADS, vocab_size=VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0)),
    "opt": lambda: OPTForCausalLM(OPTConfig(
        num_hidden_layers=2, hidden_size=HIDDEN, ffn_dim=128, num_attention_heads=HEADS, vocab_size=VOCAB,
        max_position_embeddings=64, word_embed_proj_dim=HIDDEN)),
    "opt-proj": lambda: OPTForCausalLM(OPTConfig(  # OPT-350m's layout: 32-wide embeddings projected in and out
        num_hidden_layers=2, hidden_size=HIDDEN, ffn_dim=128, num_attention_heads=HEADS, vocab_size=VOCAB,
        max_position_embeddings=64, word_embed_proj_dim=32, do_layer_norm_before=False)),
    "bloom": lambda: BloomForCausalLM(BloomConfig(n_layer=2, hidden_size=HIDDEN, n_head=HEADS, vocab_size=VOCAB)),
    "gpt_neox": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(
        num_hidden_layers=2, hidden_size=HIDDEN, intermediate_size=128, num_attention_heads=HEADS,
        vocab_size=VOCAB, max_position_embeddings=64)),
    "gpt_neox-sequential": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(
        num_hidden_layers=2, hidden_size=HIDDEN, intermediate_size=128, num_attention_heads=HEADS,
        vocab_size=VOCAB, max_position_embeddings=64, use_parallel_residual=False)),
    "llama": lambda: LlamaForCausalLM(LlamaConfig(  # grouped-query attention: 2 kv heads for 4 query heads
        num_hidden_layers=2, hidden_size=HIDDEN, intermediate_size=128, num_attention_heads=HEADS,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)),
    "mistral": lambda: MistralForCausalLM(MistralConfig(
        num_hidden_layers=2, hidden_size=HIDDEN, intermediate_size=128, num_attention_heads=HEADS,
        num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)),
}
ARCHS = list(BUILDERS)

# Block 1's producers, written out by hand from each model's forward (block 0 reads the embedding).
PROXY_PAIRS = {
    "gpt2": {
        "transformer.h.0.attn.c_attn": "transformer.wte",
        "transformer.h.1.attn.c_attn": "transformer.h.0.mlp.c_proj",
        "transformer.h.1.attn.c_proj": "transformer.h.1.attn.c_attn",
        "transformer.h.1.mlp.c_fc": "transformer.h.1.attn.c_proj",
        "transformer.h.1.mlp.c_proj": "transformer.h.1.mlp.c_fc",
    },
    "opt": {
        "model.decoder.layers.0.self_attn.q_proj": "model.decoder.embed_tokens",  # not embed_positions
        "model.decoder.layers.1.self_attn.k_proj": "model.decoder.layers.0.fc2",
        "model.decoder.layers.1.self_attn.out_proj": "model.decoder.layers.1.self_attn.v_proj",
        "model.decoder.layers.1.fc1": "model.decoder.layers.1.self_attn.out_proj",
        "model.decoder.layers.1.fc2": "model.decoder.layers.1.fc1",
    },
    "opt-proj": {
        "model.decoder.project_in": "model.decoder.embed_tokens",
        "model.decoder.layers.0.self_attn.v_proj": "model.decoder.project_in",
        "model.decoder.project_out": "model.decoder.layers.1.fc2",
    },
    "bloom": {
        "transformer.h.0.self_attention.query_key_value": "transformer.word_embeddings",
        "transformer.h.1.self_attention.query_key_value": "transformer.h.0.mlp.dense_4h_to_h",
        "transformer.h.1.self_attention.dense": "transformer.h.1.self_attention.query_key_value",
        "transformer.h.1.mlp.dense_h_to_4h": "transformer.h.1.self_attention.dense",
        "transformer.h.1.mlp.dense_4h_to_h": "transformer.h.1.mlp.dense_h_to_4h",
    },
    "gpt_neox": {  # parallel residual: the MLP reads the block input, as attention does
        "gpt_neox.layers.0.mlp.dense_h_to_4h": "gpt_neox.embed_in",
        "gpt_neox.layers.1.attention.query_key_value": "gpt_neox.layers.0.mlp.dense_4h_to_h",
        "gpt_neox.layers.1.attention.dense": "gpt_neox.layers.1.attention.query_key_value",
        "gpt_neox.layers.1.mlp.dense_h_to_4h": "gpt_neox.layers.0.mlp.dense_4h_to_h",
        "gpt_neox.layers.1.mlp.dense_4h_to_h": "gpt_neox.layers.1.mlp.dense_h_to_4h",
    },
    "gpt_neox-sequential": {
        "gpt_neox.layers.1.mlp.dense_h_to_4h": "gpt_neox.layers.1.attention.dense",
    },
    "llama": {
        "model.layers.0.self_attn.q_proj": "model.embed_tokens",
        "model.layers.1.self_attn.v_proj": "model.layers.0.mlp.down_proj",
        "model.layers.1.self_attn.o_proj": "model.layers.1.self_attn.v_proj",
        "model.layers.1.mlp.gate_proj": "model.layers.1.self_attn.o_proj",
        "model.layers.1.mlp.down_proj": "model.layers.1.mlp.up_proj",
    },
}
PROXY_PAIRS["mistral"] = PROXY_PAIRS["llama"]


@pytest.fixture(scope="module", params=ARCHS)
def arch_model(request):
    torch.manual_seed(0)
    return request.param, BUILDERS[request.param]().eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def weight_matrices(model) -> dict[str, int]:
    """The model's own weight matrices outside the output head: module name -> numel."""
    return {name: m.weight.numel() for name, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 2
            and not isinstance(m, nn.Embedding) and name != "lm_head"}


def quantized_names(model) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, QuantLinear)}


def test_every_block_weight_is_quantized(arch_model):
    name, model = arch_model
    arch = ARCHITECTURES[model.config.model_type]
    own = weight_matrices(model)
    n_blocks = len(model.get_submodule(arch.blocks))
    mapped = {f"{arch.blocks}.{i}.{layer}" for i in range(n_blocks) for layer in arch.layers}
    mapped |= {outside for outside in arch.outside if outside in own}
    assert mapped == set(own)  # the map names exactly the model's weight matrices
    report = quantize_model_(model, QuantConfig(4, "int", 64))
    try:
        assert quantized_names(model) == set(own)
        assert report.n_layers == len(own) and report.n_quantized == sum(own.values())
        assert isinstance(model.get_submodule("lm_head"), nn.Linear)  # the output head is skipped
    finally:
        restore_model_(model)


@pytest.mark.parametrize("bits, blocksize", [(4, 64), (3, 128), (8, 64)])
def test_bit_report_follows_the_formula(arch_model, bits, blocksize):
    name, model = arch_model
    n_params = sum(p.numel() for p in model.parameters())  # unique tensors: tied embeddings once
    n_weights = sum(weight_matrices(model).values())
    report = quantize_model_(model, QuantConfig(bits, "nf", blocksize))
    try:
        per_param = bits + 16 / blocksize  # every weight matrix here is a whole number of blocks
        assert report.n_params == n_params and report.n_quantized == n_weights
        assert report.bits_per_param == per_param
        assert report.total_bits == n_weights * per_param + (n_params - n_weights) * 16
        kinds = report.by_kind
        assert sum(k["n_layers"] for k in kinds.values()) == report.n_layers
        assert sum(k["n_quantized"] for k in kinds.values()) == n_weights
        assert all(k["bits_per_param"] == per_param for k in kinds.values())
        assert {"attention.o", "mlp.up", "mlp.down"} <= set(kinds)
        assert ({"attention.qkv"} <= set(kinds)) != ({"attention.q", "attention.k", "attention.v"} <= set(kinds))
    finally:
        restore_model_(model)


def test_outputs_close_at_8_bits_and_worse_at_3(arch_model, ids):
    name, model = arch_model
    ref = logits(model, ids)
    spread = (ref - ref.mean(-1, keepdim=True)).abs().mean()
    err = {}
    for bits in (8, 3):
        quantize_model_(model, QuantConfig(bits, "int", 64))
        err[bits] = float((logits(model, ids) - ref).abs().mean() / spread)
    restore_model_(model)
    assert err[8] < 0.02, err
    assert err[3] > 10 * err[8], err
    assert torch.equal(logits(model, ids), ref)


def test_proxy_pairs_follow_the_architecture_map(arch_model):
    name, model = arch_model
    targets = sorted(weight_matrices(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known architecture never falls back
        sources = proxy_sources(model, targets)
    assert set(sources) == set(targets) and None not in sources.values()
    assert {t: sources[t] for t in PROXY_PAIRS[name]} == PROXY_PAIRS[name]


def test_outliers_work_on_every_architecture(arch_model, ids):
    name, model = arch_model
    ref = logits(model, ids)
    report = quantize_model_(model, QuantConfig(3, "int", 64, outlier_fraction=0.05))
    try:
        layers = [m for m in model.modules() if isinstance(m, QuantLinear)]
        assert all(m.n_outliers == max(1, round(0.05 * m.in_features)) for m in layers)
        assert report.n_outlier_params == sum(m.n_outliers * m.out_features for m in layers)
        assert torch.isfinite(logits(model, ids)).all() and not torch.equal(logits(model, ids), ref)
    finally:
        restore_model_(model)


def _scaled_units(layer: nn.Module, units: list[int], factor: float = 20.0):
    """Multiply output units of a Linear / Conv1D (20x weight std, as in the paper's outliers)."""
    with torch.no_grad():
        if isinstance(layer, Conv1D):
            layer.weight[:, units] *= factor
        else:
            layer.weight[units] *= factor


def _outliers_of(model, target: str, source: str, units: list[int], fraction: float) -> list[int]:
    layer = model.get_submodule(source)
    saved = layer.weight.detach().clone()
    try:
        _scaled_units(layer, units)
        return outlier_dims(model, [target], fraction)[target].tolist()
    finally:
        with torch.no_grad():
            layer.weight.copy_(saved)


HEAD_DIM = HIDDEN // HEADS


@pytest.mark.parametrize("name, target, source, units, expected", [
    # GPT-2's c_attn outputs [q | k | v]: V unit j is output 2*HIDDEN + j
    ("gpt2", "transformer.h.0.attn.c_proj", "transformer.h.0.attn.c_attn", [2 * HIDDEN + 5], [5]),
    ("gpt2", "transformer.h.0.attn.c_proj", "transformer.h.0.attn.c_attn", [5], None),  # a q unit: not an input of c_proj
    # BLOOM / GPT-NeoX fuse per head [q_h k_h v_h]: head 1's V unit 3 is output 1*3*hd + 2*hd + 3
    ("bloom", "transformer.h.0.self_attention.dense", "transformer.h.0.self_attention.query_key_value",
     [3 * HEAD_DIM + 2 * HEAD_DIM + 3], [HEAD_DIM + 3]),
    ("gpt_neox", "gpt_neox.layers.1.attention.dense", "gpt_neox.layers.1.attention.query_key_value",
     [3 * HEAD_DIM + 2 * HEAD_DIM + 3], [HEAD_DIM + 3]),
    # Llama with 2 kv heads for 4 query heads: kv head 1 feeds query heads 2 and 3
    ("llama", "model.layers.0.self_attn.o_proj", "model.layers.0.self_attn.v_proj",
     [HEAD_DIM + 7], [2 * HEAD_DIM + 7, 3 * HEAD_DIM + 7]),
    # the parallel-residual MLP follows the previous block's MLP output, not this block's attention
    ("gpt_neox", "gpt_neox.layers.1.mlp.dense_h_to_4h", "gpt_neox.layers.0.mlp.dense_4h_to_h", [9, 40], [9, 40]),
])
def test_proxy_takes_the_producing_units(name, target, source, units, expected):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    fraction = max(len(expected or units), 1) / HIDDEN
    dims = _outliers_of(model, target, source, units, fraction)
    if expected is None:
        baseline = outlier_dims(model, [target], fraction)[target].tolist()
        assert dims == baseline  # scaling a unit the layer does not read changes nothing
    else:
        assert dims == expected


def test_unit_selections_are_named_in_the_map():
    used = {layer.source.units for arch in ARCHITECTURES.values() for layer in arch.layers.values()}
    assert {V_OF_CONCAT_QKV, V_OF_HEADWISE_QKV, V_GROUPED} <= used


def test_unknown_architecture_warns_and_falls_back_to_module_order():
    torch.manual_seed(0)
    model = BUILDERS["opt"]().eval()
    model.config.model_type = "mystery"
    targets = ["model.decoder.layers.0.self_attn.q_proj", "model.decoder.layers.0.fc1", "model.decoder.layers.1.fc2"]
    with pytest.warns(UserWarning, match="no architecture map for model_type 'mystery'.*module order"):
        sources = proxy_sources(model, targets)
    assert sources == {
        "model.decoder.layers.0.self_attn.q_proj": "model.decoder.embed_tokens",  # the token table, not positions
        "model.decoder.layers.0.fc1": "model.decoder.layers.0.self_attn.out_proj",
        "model.decoder.layers.1.fc2": "model.decoder.layers.1.fc1",
    }
    with pytest.warns(UserWarning):
        report = quantize_model_(model, QuantConfig(4, "nf", 64, outlier_fraction=0.02))
    restore_model_(model)
    assert report.n_layers == 12 and "self_attn.q_proj" in report.by_kind  # kinds: the name inside the block


def test_plan_marks_fused_v_slices():
    torch.manual_seed(0)
    model = BUILDERS["gpt2"]().eval()
    plan = proxy_plan(model, ["transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc"])
    assert plan["transformer.h.0.attn.c_proj"].units.tolist() == list(range(2 * HIDDEN, 3 * HIDDEN))
    assert plan["transformer.h.0.mlp.c_fc"].units is None


# -- GPT-2's Conv1D ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    return BUILDERS["gpt2"]().eval()


def test_gpt2_conv1d_layers_are_quantized_not_left_at_16_bits(gpt2):
    report = quantize_model_(gpt2, QuantConfig(4, "nf", 64))
    try:
        assert report.n_layers == 8 and report.bits_per_param == 4.25  # before: n_layers=0, bits_per_param=16.0
        layer = gpt2.transformer.h[0].attn.c_attn
        assert isinstance(layer, QuantLinear) and isinstance(layer.original, Conv1D)
        assert (layer.in_features, layer.out_features) == (HIDDEN, 3 * HIDDEN)
        w = layer.original.weight.detach().t()  # Conv1D stores (in, out)
        err = (layer.dequantized_weight(torch.float32) - w).abs().max() / w.abs().max()
        assert err < 0.2
    finally:
        restore_model_(gpt2)


def test_gpt2_restore_gives_back_the_exact_conv1d_weights(gpt2, ids):
    state = {k: v.clone() for k, v in gpt2.state_dict().items()}
    ref = logits(gpt2, ids)
    quantize_model_(gpt2, QuantConfig(3, "int", 64, outlier_fraction=0.05))
    assert restore_model_(gpt2) == 8
    assert all(isinstance(gpt2.transformer.h[i].mlp.c_fc, Conv1D) for i in range(2))
    assert state.keys() == gpt2.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in gpt2.state_dict().items())
    assert torch.equal(logits(gpt2, ids), ref)


@pytest.mark.parametrize("outliers", [0.0, 0.05])
def test_gpt2_triton_matches_the_torch_reference(gpt2, ids, outliers, device):
    """The Triton kernels (the interpreter on CPU) run the transposed Conv1D weights as the reference does."""
    model = gpt2.to(device)
    ids = ids.to(device)
    cfg = QuantConfig(4, "nf", 64, outlier_fraction=outliers)
    try:
        quantize_model_(model, cfg, backend="torch")
        expected = logits(model, ids)
        quantize_model_(model, cfg, backend="triton")
        got = logits(model, ids)
    finally:
        restore_model_(model)
        model.to("cpu")
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()


# -- refusing what cannot be quantized -----------------------------------------------------------


class Tiny(nn.Module):
    """Embeddings and norms only: nothing for kbit to quantize."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.norm = nn.LayerNorm(16)


def test_nothing_quantizable_is_refused_with_a_clear_error():
    model = Tiny()
    assert quantize_model_(model, QuantConfig(16)).bits_per_param == 16.0  # the baseline is still fine
    with pytest.raises(CoverageError, match=r"nothing to quantize in Tiny: no nn.Linear or transformers Conv1D"):
        quantize_model_(model, QuantConfig(4, "nf", 64))
    llama = LlamaForCausalLM(LlamaConfig(num_hidden_layers=0, hidden_size=32, intermediate_size=64,
                                         num_attention_heads=2, vocab_size=VOCAB))
    with pytest.raises(CoverageError, match=r"model_type 'llama'.*nf4-b64 would be the 16-bit model under a 4-bit label"):
        quantize_model_(llama, QuantConfig(4, "nf", 64))
    torch.manual_seed(0)
    gpt2 = BUILDERS["gpt2"]()
    with pytest.raises(CoverageError, match="nothing to quantize"):
        quantize_model_(gpt2, QuantConfig(4, "nf", 64), skip=("lm_head", "c_attn", "c_proj", "c_fc"))


class Mixer(nn.Module):
    """A block layer kbit cannot replace: a bare weight matrix, not an nn.Linear."""

    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(16, 16))
        self.proj = nn.Linear(16, 16)


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Mixer(), Mixer()])


def test_block_weights_kbit_cannot_replace_are_refused_unless_skipped():
    model = Stack()
    with pytest.raises(CoverageError, match=r"2 weight matrices of its transformer blocks.*blocks.0.kernel, blocks.1.kernel"):
        quantize_model_(model, QuantConfig(4, "int", 64))
    assert not any(isinstance(m, QuantLinear) for m in model.modules())
    with pytest.raises(CoverageError, match="blocks.1.kernel"):
        quantize_model_(model, QuantConfig(4, "int", 64), skip=("blocks.0.kernel",))
    report = quantize_model_(model, QuantConfig(4, "int", 64), skip=("kernel",))  # kept in 16 bit knowingly
    assert report.n_layers == 2 and report.n_params == 2 * (16 * 16 + 16 * 16 + 16)

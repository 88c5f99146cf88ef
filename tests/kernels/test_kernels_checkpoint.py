"""kbit's checkpoint format (kbit.kernels.checkpoint): packed codes, scales, codebooks and outlier
columns written and read back bit for bit for every k, data type and outlier setting; whole models
saved and loaded compute the same logits, take the bits their BitReport charges, and every damaged,
newer or half-written checkpoint is refused with one line."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from kbit.kernels import QuantConfig, QuantLinear, load_quantized, quantize_model_, restore_model_, save_quantized
from kbit.kernels.checkpoint import (
    MANIFEST,
    TENSORS,
    ChecksumMismatch,
    NewerCheckpoint,
    OutputExists,
    checkpoint_tensors,
    quantized_layer,
    read_manifest,
)
from kbit.kernels.packing import packed_nbytes

DTYPES = ("int", "fp", "nf", "quantile", "dynamic")
BUFFERS = ("codes", "absmax", "codebook", "outlier_idx", "keep_idx", "outlier_weight")


class Holder(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.proj = layer


@pytest.mark.parametrize("bits", range(2, 9))
def test_packed_layers_round_trip_through_the_file_for_every_dtype_and_outliers(bits, tmp_path):
    torch.manual_seed(bits)
    linear = nn.Linear(40, 24)
    x = torch.randn(3, 40)
    for dtype, outliers in itertools.product(DTYPES, (None, torch.tensor([3, 17, 30]))):
        cfg = QuantConfig(bits, dtype, 32)
        layer = QuantLinear(linear, cfg, outliers, backend="torch")
        tensors, meta, tied = checkpoint_tensors(Holder(layer), cfg)
        assert tied == {} and ("proj.codebook" in tensors) == (dtype == "quantile")  # fixed codebooks are not stored
        save_file(tensors, str(tmp_path / TENSORS))
        stored = load_file(str(tmp_path / TENSORS))
        weight_bytes = sum(t.numel() * t.element_size() for k, t in stored.items() if k != "proj.bias")
        padding = packed_nbytes(layer.qtensor.numel, bits) - layer.qtensor.numel * bits / 8
        assert weight_bytes == layer.weight_bits / 8 + padding, (dtype, outliers)  # exactly the charged bits
        back = quantized_layer("proj", meta["proj"], stored, cfg, backend="torch")
        assert stored == {}
        for name in BUFFERS:
            a, b = getattr(layer, name), getattr(back, name)
            assert (a is None and b is None) or (torch.equal(a, b) and a.dtype == b.dtype), (name, dtype, outliers)
        assert torch.equal(layer(x), back(x)) and back.weight_bits == layer.weight_bits


def tiny_llama(dtype=torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).to(dtype).eval()


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory):
    """A tiny tied-embedding Llama saved with save_pretrained, as the family's models are."""
    folder = tmp_path_factory.mktemp("base")
    tiny_llama().save_pretrained(folder)
    return folder


def from_base(folder, dtype):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()


IDS = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
MODELS = [
    (torch.float32, QuantConfig(4, "nf", 64)),
    (torch.bfloat16, QuantConfig(3, "quantile", 64, outlier_fraction=0.05)),
    (torch.float16, QuantConfig(5, "int", 32, outlier_fraction=0.05, method="gptq")),
]


@pytest.mark.parametrize("dtype,cfg", MODELS, ids=[f"{str(d)[6:]}-{c.label()}" for d, c in MODELS])
def test_a_saved_model_loads_as_quantlinear_with_the_same_logits_and_the_charged_bits(saved_base, tmp_path, dtype, cfg):
    model = from_base(saved_base, dtype)
    report = quantize_model_(model, cfg, calibration=[torch.randint(0, 64, (4, 16))])
    with torch.no_grad():
        logits = model(IDS).logits
    manifest = save_quantized(model, tmp_path / "ckpt", info={"run": {"run_id": 7}})
    loaded = load_quantized(tmp_path / "ckpt")
    layers = [m for m in loaded.modules() if isinstance(m, QuantLinear)]
    assert len(layers) == report.n_layers and all(m.config == cfg and m.original is None for m in layers)
    with torch.no_grad():
        assert torch.equal(loaded(IDS).logits, logits)
    assert manifest["bits"] == {k: report.to_dict()[k] for k in ("n_params", "n_quantized", "bits_per_param", "total_bits")}
    assert manifest["label"] == cfg.label() and manifest["run"] == {"run_id": 7}
    assert read_manifest(tmp_path / "ckpt") == json.loads((tmp_path / "ckpt" / MANIFEST).read_text())
    stored = load_file(str(tmp_path / "ckpt" / TENSORS))  # embeddings (tied with lm_head: stored once), norms
    extra = sum(2 * t.numel() for k, t in stored.items()  # float32 values no 16-bit type holds stay float32
                if t.dtype == torch.float32 and not k.endswith(".codebook"))
    assert (extra > 0) == (dtype == torch.float32)
    on_disk = (tmp_path / "ckpt" / TENSORS).stat().st_size
    assert manifest["tensor_bytes"] <= on_disk < manifest["tensor_bytes"] + 16_000  # + the safetensors JSON header
    assert report.total_bits / 8 + extra <= manifest["tensor_bytes"] <= 1.01 * (report.total_bits / 8 + extra)
    assert loaded.generate(IDS[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)
    with pytest.raises(ValueError, match="loaded from a kbit checkpoint"):
        restore_model_(loaded)


def test_a_float32_model_of_16_bit_weights_is_written_in_16_bit_and_read_back_exactly(tmp_path):
    """The bundled family (shipped in float16) and any 16-bit checkpoint loaded in float32 on a CPU."""
    tiny_llama(torch.float16).save_pretrained(tmp_path / "base16")
    model = from_base(tmp_path / "base16", torch.float32)
    report = quantize_model_(model, QuantConfig(4, "quantile", 64, outlier_fraction=0.05))
    manifest = save_quantized(model, tmp_path / "ckpt")
    assert manifest["model_dtype"] == "float32" and manifest["narrowed"]
    assert not any(name.endswith(".codebook") for name in manifest["narrowed"])  # charged at 32 bits: kept
    assert report.total_bits / 8 <= manifest["tensor_bytes"] <= 1.01 * report.total_bits / 8
    loaded = load_quantized(tmp_path / "ckpt")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    with torch.no_grad():
        assert torch.equal(loaded(IDS).logits, model(IDS).logits)


@pytest.fixture
def checkpoint(saved_base, tmp_path):
    model = from_base(saved_base, torch.bfloat16)
    quantize_model_(model, QuantConfig(4, "nf", 64))
    save_quantized(model, tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


def test_an_output_folder_that_is_not_empty_is_replaced_only_with_force(checkpoint):
    model, folder = checkpoint
    (folder.parent / "empty").mkdir()
    save_quantized(model, folder.parent / "empty")  # an empty folder is fine
    with pytest.raises(OutputExists, match=r"is not empty; .* --force"):
        save_quantized(model, folder)
    (folder / "stray.txt").write_text("x")
    save_quantized(model, folder, force=True)
    assert not (folder / "stray.txt").exists() and read_manifest(folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ckpt", "empty"]  # no temp folder left


def test_an_error_while_writing_leaves_nothing_behind(checkpoint):
    model, folder = checkpoint

    class BrokenTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(OSError, match="disk full"):
        save_quantized(model, folder, tokenizer=BrokenTokenizer(), force=True)
    with pytest.raises(OSError, match="disk full"):
        save_quantized(model, folder.parent / "new", tokenizer=BrokenTokenizer())
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ckpt"]  # the old checkpoint intact, no temp folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def rewrite_manifest(folder, **changes):
    """Change manifest fields and re-seal it with a valid sha256 (as a newer kbit would write it)."""
    import hashlib

    from kbit.kernels.checkpoint import _canonical

    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.pop("manifest_sha256")
    manifest.update(changes)
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_damaged_or_newer_checkpoints_are_refused_in_one_line(checkpoint):
    _, folder = checkpoint
    data = bytearray((folder / TENSORS).read_bytes())
    data[-1] ^= 1
    (folder / TENSORS).write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=r"model.safetensors does not match the sha256") as info:
        load_quantized(folder)
    assert "\n" not in str(info.value)
    data[-1] ^= 1
    (folder / TENSORS).write_bytes(bytes(data))
    assert load_quantized(folder) is not None

    text = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(text.replace('"bits_per_param": 4.', '"bits_per_param": 3.'))
    with pytest.raises(ChecksumMismatch, match="kbit-manifest.json does not match its sha256"):
        load_quantized(folder)
    (folder / MANIFEST).write_text(text)
    for key in ("format_version", "numerics_version"):
        rewrite_manifest(folder, **{key: 99})
        with pytest.raises(NewerCheckpoint, match=f"written with {key} 99 .*upgrade kbit"):
            load_quantized(folder)
        (folder / MANIFEST).write_text(text)
    rewrite_manifest(folder, fixed_codebook_sha256="0" * 64)
    with pytest.raises(NewerCheckpoint, match="nf4-b64 codebook this kbit builds differs"):
        load_quantized(folder)

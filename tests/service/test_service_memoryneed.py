"""The memory estimate of a group before its model was measured (kbit.service.memoryneed), from a
checkpoint folder's weight files and config, and from this machine's Hugging Face cache."""

from __future__ import annotations

import json

import pytest

from kbit.service.memoryneed import checkpoint_weight_bytes, estimate_need_bytes

GIB = 2**30


def checkpoint(folder, weight_bytes, dtype="float16", vocab=1000, positions=512, sharded=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"torch_dtype": dtype, "vocab_size": vocab,
                                                     "max_position_embeddings": positions}))
    if sharded:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": weight_bytes}}))
    else:
        with open(folder / "model.safetensors", "wb") as f:
            f.truncate(weight_bytes)  # sparse: only its size matters
    return str(folder)


def test_the_estimate_is_weights_times_one_plus_k_over_16_plus_workspace_and_logits(tmp_path):
    model = checkpoint(tmp_path / "m", weight_bytes=2 * GIB, dtype="float16")
    logits = 8 * 512 * 1000 * 10
    assert estimate_need_bytes(model, "main", bits=4, batch_size=8) == int(2 * GIB * 1.25 * 1.1 + logits)
    assert estimate_need_bytes(model, "main", bits=16, batch_size=8) == int(2 * GIB * 1.1 + logits)
    # stored in fp16, loaded in fp32: twice the weights
    assert estimate_need_bytes(model, "main", bits=16, batch_size=8, load_dtype="fp32") == int(4 * GIB * 1.1 + logits)
    assert estimate_need_bytes(model, "main", bits=4, batch_size=32) > estimate_need_bytes(model, "main", 4, 8)


def test_a_sharded_checkpoint_counts_its_index_total(tmp_path):
    model = checkpoint(tmp_path / "big", weight_bytes=130 * GIB, sharded=True)
    assert checkpoint_weight_bytes(model, "main") == 130 * GIB


def test_a_model_of_the_hub_cache_is_found_and_one_not_here_is_unknown(tmp_path, monkeypatch):
    hub = tmp_path / "hf" / "hub"
    snapshot = hub / "models--org--tiny" / "snapshots" / ("a" * 40)
    checkpoint(snapshot, weight_bytes=GIB)
    (hub / "models--org--tiny" / "refs").mkdir(parents=True)
    (hub / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    assert checkpoint_weight_bytes("org/tiny", "main") == GIB
    assert estimate_need_bytes("org/tiny", "main", 4, 8) is not None
    assert estimate_need_bytes("org/not-downloaded", "main", 4, 8) is None
    assert estimate_need_bytes(str(tmp_path / "no-such-folder"), "main", 4, 8) is None


@pytest.mark.parametrize("config", ["{not json", "[1, 2]"])
def test_a_broken_config_gives_no_estimate(tmp_path, config):
    model = checkpoint(tmp_path / "m", weight_bytes=GIB)
    (tmp_path / "m" / "config.json").write_text(config)
    assert estimate_need_bytes(model, "main", 4, 8) is None

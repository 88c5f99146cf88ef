"""A group's GPU memory need before any run of its model was measured: an estimate from the
checkpoint's weight files and config (a local folder, or the Hugging Face cache of this machine),
the group's bits and its eval batch size.

    need = weights at the load dtype x (1 + k/16)      the original weights stay for restoring,
                                                       the packed k-bit copy sits beside them
           x 1.1                                       kernel workspace, CUDA context
         + batch x context x vocab x 10 bytes          lm-eval's logits (model dtype) and their
                                                       float32 log-softmax

None when the checkpoint is not on this machine (the scheduler then gives a whole GPU, and learns
the real peak from the first run). No torch, no download: file sizes and JSON only.
"""

from __future__ import annotations

import json
from pathlib import Path

from kbit.sweeps.modelids import bundled_parts, is_local_path

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2}
WORKSPACE = 1.1
LOGIT_BYTES = 10  # a logit in the model's dtype (2) + its float32 log-softmax (4) + one temporary (4)
MAX_CONTEXT = 2048  # lm-eval's default max length when a model names none


def _local_file(model: str, revision: str, filename: str) -> Path | None:
    """`filename` of a local checkpoint folder, or of a Hugging Face id in this machine's cache."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    if is_local_path(model) or bundled_parts(model):  # a missing folder, or a model no hub has
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id=model, filename=filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def checkpoint_weight_bytes(model: str, revision: str) -> int | None:
    """Bytes of the checkpoint's weights as stored: a sharded safetensors index's total_size, or
    the size of model.safetensors / pytorch_model.bin; None when not on this machine."""
    index = _local_file(model, revision, "model.safetensors.index.json")
    if index is not None:
        try:
            return int(json.loads(index.read_text())["metadata"]["total_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = _local_file(model, revision, name)
        if path is not None:
            return path.stat().st_size
    return None


def checkpoint_config(model: str, revision: str) -> dict | None:
    path = _local_file(model, revision, "config.json")
    if path is None:
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def estimate_need_bytes(model: str, revision: str, bits: int, batch_size: int, load_dtype: str = "auto") -> int | None:
    """The estimate above for one group (its largest k), or None when the checkpoint is not here."""
    stored = checkpoint_weight_bytes(model, revision)
    config = checkpoint_config(model, revision)
    if stored is None or config is None:
        return None
    stored_dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    stored_bytes = DTYPE_BYTES.get(stored_dtype, 4)
    load_bytes = DTYPE_BYTES.get(load_dtype, stored_bytes)
    weights = stored / stored_bytes * load_bytes
    vocab = int(config.get("vocab_size") or 50_000)
    context = min(int(config.get("max_position_embeddings") or config.get("n_positions") or MAX_CONTEXT), MAX_CONTEXT)
    quantized = 1 + min(bits, 16) / 16 if bits < 16 else 1
    return int(weights * quantized * WORKSPACE + batch_size * context * vocab * LOGIT_BYTES)

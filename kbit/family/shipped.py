"""The bundled families' weights as they ship inside the package: one folder per member under
`weights/<family>/<size>/` (16-bit safetensors, HF config, tokenizer) with a marker holding the
recipe it was trained from, its training figures and the sha256 of every file. Training on another
machine's CPU gives other floats; loading these gives every machine the same model.

    shipped_model("kbit/demo/s1")    -> the verified folder, or None when none ships for this recipe
    ship(built_folder, model)        -> writes the package copy of a model built here (maintainers)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from kbit.errors import KbitError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MARKER = "kbit-build.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class ShippedWeightsCorrupt(KbitError, RuntimeError):
    """A shipped file does not match the checksum its marker records (the CLI shows it as one line)."""


def shipped_dir(model: str) -> Path:
    _, family, size = model.split("/")
    return WEIGHTS_DIR / family / size


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def marker(model: str) -> dict | None:
    try:
        return json.loads((shipped_dir(model) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def shipped_model(model: str, recipe: dict) -> Path | None:
    """The shipped folder of `model` when one ships for exactly this recipe, its checksums verified
    (once per process); None when none ships or it was trained from another recipe."""
    info = marker(model)
    if info is None or info.get("recipe") != recipe:
        return None
    return _verified(shipped_dir(model), json.dumps(info["files"], sort_keys=True))


@functools.lru_cache(maxsize=None)
def _verified(folder: Path, files_json: str) -> Path:
    for name, expected in json.loads(files_json).items():
        path = folder / name
        if not path.is_file() or sha256(path) != expected:
            raise ShippedWeightsCorrupt(
                f"the shipped weights in {folder} do not match their checksums ({name}); reinstall kbit, or set "
                "KBIT_FAMILY_WEIGHTS=build to train the family here instead")
    return folder


def ship(built: Path, model: str, recipe: dict, train: dict, out_root: Path = WEIGHTS_DIR) -> Path:
    """Write the package copy of the model built in folder `built`: its weights in float16, its
    config and tokenizer, and the marker with every file's checksum. Replaces what shipped before."""
    import torch
    from transformers import AutoModelForCausalLM

    _, family, size = model.split("/")
    target = out_root / family / size
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{size}-ship-", dir=target.parent))
    try:
        loaded = AutoModelForCausalLM.from_pretrained(built, dtype=torch.float32)
        loaded.to(torch.float16).save_pretrained(scratch, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (built / name).exists():
                shutil.copy2(built / name, scratch / name)
        files = {p.name: sha256(p) for p in sorted(scratch.iterdir()) if p.is_file()}
        (scratch / MARKER).write_text(json.dumps({"model": model, "recipe": recipe, "train": train,
                                                  "dtype": "float16", "files": files}, indent=1) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target

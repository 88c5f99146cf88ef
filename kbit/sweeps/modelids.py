"""Model ids: which family a model belongs to, how bundled ids (kbit/<family>/<size>, and
kbit/<family>/<size>@seed<N> for the member trained with the family's N-th seed) split, and whether
a name is a local path (the one check the reader, the workers and the scheduler share)."""

from __future__ import annotations

import re

from kbit import settings

_SIZE = re.compile(r"^\d+(\.\d+)?[kmbt]\d*$", re.IGNORECASE)  # 1.3b, 70m, and BLOOM's 1b1, 7b1
_SIZE_WORDS = {"tiny", "mini", "small", "base", "medium", "large", "xl", "xxl"}
LOCAL_PREFIXES = ("/", "./", "../", "~")


def bundled_parts(model: str) -> tuple[str, str] | None:
    """'kbit/demo/s1' -> ('demo', 's1'), and so for every seed ('kbit/demo/s1@seed2' too); anything
    else (HF ids, paths) -> None."""
    parts = model.split("/")
    if len(parts) == 3 and parts[0] == "kbit" and all(parts):
        size = settings.split_seed(parts[2])[0]
        return (parts[1], size) if size else None
    return None


def bundled_seed(model: str) -> int:
    """Which of its family's training seeds a bundled id names: 'kbit/demo/s1@seed2' -> 2, 'kbit/demo/s1' -> 1."""
    return settings.split_seed(model)[1]


def with_seed(model: str, seed: int) -> str:
    """The id of `model` trained with seed `seed`: seed 1 is the id itself (so every id that existed
    before seeds keeps its meaning and its cache keys), 'kbit/demo/s1', 3 -> 'kbit/demo/s1@seed3'."""
    base = settings.split_seed(model)[0]
    return base if seed == 1 else f"{base}{settings.SEED_MARK}{seed}"


def is_local_path(name: str) -> bool:
    """Written as a path, so never a Hugging Face id or a bundled model: /models/opt-125m, ./m,
    ../m, ~/m, or a relative path of three or more parts (models/opt/125m; a hub id has at most
    two, org/name, and kbit/<family>/<size> is a bundled model). Decided from the text alone, so
    every machine decides the same; whether the folder exists is a question for the one that loads
    it (a plain relative name such as `opt-125m` is a folder there only if it exists)."""
    if not isinstance(name, str) or not name:
        return False
    if name.startswith(LOCAL_PREFIXES) or name in (".", ".."):
        return True
    return name.count("/") > 1 and bundled_parts(name) is None


def model_family(model: str) -> str:
    """The family a model's results are grouped under on the frontier.

    'kbit/demo/s1' -> 'kbit-demo' (every seed: 'kbit/demo/s1@seed2' too); 'EleutherAI/pythia-410m-deduped' -> 'pythia';
    'facebook/opt-1.3b' -> 'opt'; 'meta-llama/Llama-2-7b-hf' -> 'llama-2'; 'gpt2-medium' -> 'gpt2';
    a local path -> its folder name read the same way.
    """
    bundled = bundled_parts(model)
    if bundled is not None:
        return f"kbit-{bundled[0]}"
    name = model.rstrip("/").split("/")[-1].lower()
    tokens = name.replace("_", "-").split("-")
    kept = []
    for token in tokens:
        if _SIZE.match(token) or token in _SIZE_WORDS:
            break
        kept.append(token)
    return "-".join(kept) or name

"""Model ids: which family a model belongs to, and how bundled ids (kbit/<family>/<size>) split."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\d+(\.\d+)?[kmbt]\d*$", re.IGNORECASE)  # 1.3b, 70m, and BLOOM's 1b1, 7b1
_SIZE_WORDS = {"tiny", "mini", "small", "base", "medium", "large", "xl", "xxl"}


def bundled_parts(model: str) -> tuple[str, str] | None:
    """'kbit/demo/s1' -> ('demo', 's1'); anything else (HF ids, paths) -> None."""
    parts = model.split("/")
    if len(parts) == 3 and parts[0] == "kbit" and all(parts):
        return parts[1], parts[2]
    return None


def model_family(model: str) -> str:
    """The family a model's results are grouped under on the frontier.

    'kbit/demo/s1' -> 'kbit-demo'; 'EleutherAI/pythia-410m-deduped' -> 'pythia';
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

"""Build one bundled family member: the family's tokenizer and token stream (trained once per
family, cached beside its models), then a model trained on that stream and saved with
`save_pretrained` together with the tokenizer, so AutoModelForCausalLM/AutoTokenizer load it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoTokenizer

from kbit.family import corpus
from kbit.family.tokenizer import train_tokenizer
from kbit.family.training import llama_config, train_model

TOKENIZER_DIR = "tokenizer"
STREAM_FILE = "train-tokens.pt"


def _training_chapters(spec) -> tuple[corpus.Chapter, ...]:
    train, _ = corpus.split()
    return train if spec.train_chapters is None else train[: spec.train_chapters]


def _tokenizer_recipe(spec) -> dict:
    return {"vocab_size": spec.vocab_size, "context": spec.context, "train_chapters": spec.train_chapters}


def ensure_tokenizer(spec, family_dir: Path):
    """(tokenizer, training token stream) of a family, trained and cached on first use."""
    folder = family_dir / TOKENIZER_DIR
    marker = folder / "kbit-tokenizer.json"
    family_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(family_dir / ".tokenizer.lock")):
        if not (marker.exists() and json.loads(marker.read_text()) == _tokenizer_recipe(spec)):
            scratch = Path(tempfile.mkdtemp(prefix=".tokenizer-build-", dir=family_dir))
            try:
                chapters = _training_chapters(spec)
                tok = train_tokenizer((c.text for c in chapters), spec.vocab_size, spec.context)
                tok.save_pretrained(scratch)
                ids: list[int] = []
                for chapter in chapters:  # documents separated by EOS, as evaluation sees them
                    ids.append(tok.eos_token_id)
                    ids.extend(tok.backend_tokenizer.encode(chapter.text, add_special_tokens=False).ids)
                torch.save(torch.tensor(ids, dtype=torch.int32), scratch / STREAM_FILE)
                (scratch / marker.name).write_text(json.dumps(_tokenizer_recipe(spec)))
                if folder.exists():
                    shutil.rmtree(folder)
                os.replace(scratch, folder)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(folder)
    stream = torch.load(folder / STREAM_FILE).long()
    return tok, stream


def build_member(spec, family: str, size: str, out: Path, home: Path, seed: int | None = None,
                 name: str | None = None) -> dict:
    """Train member `size` of `family` into folder `out` with torch seed `seed` (default: the
    recipe's); returns the training figures. Every seed shares the family's tokenizer and text."""
    tok, stream = ensure_tokenizer(spec, home / "models" / family)
    geometry = spec.sizes[size]
    config = llama_config(geometry, len(tok), spec.context, tok.eos_token_id)
    model, stats = train_model(
        config, stream, tokens=geometry.tokens, batch_size=spec.batch_size, lr=geometry.lr,
        seed=spec.seed if seed is None else seed, desc=f"build {name or f'kbit/{family}/{size}'}",
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return asdict(stats)

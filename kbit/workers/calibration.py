"""GPTQ's calibration batches: the text a `Calibration` names (the bundled family's training text,
a local text file, or a Hugging Face dataset), tokenized with the model's tokenizer and cut into
`samples` random windows of `seq_len` tokens (at most the model's context), drawn with the seed.
A source that cannot be read fails the GPTQ runs as `calibration_unavailable`.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import torch

from kbit.sweeps.evalspec import BUNDLED_SOURCE, Calibration
from kbit.workers.errors import CalibrationUnavailable

BATCH_ROWS = 8  # windows per forward pass through the model
PIECE_CHARS = 1 << 16  # the text is tokenized in pieces of about this many characters
MAX_CHARS = 1 << 23  # text read from a file or dataset beyond this is not needed for the windows
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length")


def model_context(model) -> int | None:
    """The longest sequence the model was built for (None when its config names none, e.g. ALiBi)."""
    config = getattr(model, "config", None)
    for name in CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _bundled_text() -> str:
    from kbit.family import corpus

    train, _ = corpus.split()  # never the held-out chapters the bundled tasks are made from
    return "\n\n".join(chapter.text for chapter in train)


def _file_text(source: str) -> str:
    path = Path(source).expanduser()
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.read(MAX_CHARS)
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationUnavailable(f"calibration source {source!r} cannot be read ({type(exc).__name__}: {exc}); "
                                     "give a UTF-8 text file the worker can read") from None


def _dataset_text(source: str) -> str:
    name, _, config = source.partition(":")
    try:
        import datasets

        rows = datasets.load_dataset(name, config or None, split="train", streaming=True)
        pieces, size = [], 0
        for row in rows:
            text = row.get("text") if isinstance(row, dict) else None
            if text:
                pieces.append(text)
                size += len(text)
            if size >= MAX_CHARS:
                break
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for a missing, offline or odd dataset
        raise CalibrationUnavailable(
            f"calibration dataset {source!r} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "give a dataset id[:config] whose train split has a text column (in the local cache when offline), "
            "a text file, or bundled") from None
    return "\n\n".join(pieces)


def calibration_text(spec: Calibration) -> str:
    if spec.source == BUNDLED_SOURCE:
        return _bundled_text()
    return _file_text(spec.source) if spec.is_file else _dataset_text(spec.source)


def _pieces(text: str) -> list[str]:
    """The text in pieces of about PIECE_CHARS characters, cut after a newline where there is one."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + PIECE_CHARS)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        pieces.append(text[start:end])
        start = end
    return pieces


def tokenize(text: str, tokenizer) -> torch.Tensor:
    """The token ids of the whole text, one flat int64 tensor."""
    pieces = _pieces(text)
    if not pieces:
        return torch.empty(0, dtype=torch.int64)
    ids = tokenizer(pieces, add_special_tokens=False, verbose=False)["input_ids"]
    return torch.tensor([t for piece in ids for t in piece], dtype=torch.int64)


# A worker keeps its tokenizer with its loaded model: each GPTQ group of that model reuses the
# tokens of a source (the bundled text takes seconds to tokenize) for as long as the tokenizer lives.
_TOKENS: "weakref.WeakKeyDictionary[object, dict[str, torch.Tensor]]" = weakref.WeakKeyDictionary()


def source_tokens(spec: Calibration, tokenizer) -> torch.Tensor:
    """The token ids of the calibration source, tokenized once per tokenizer object."""
    try:
        known = _TOKENS.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced is not cached
        known = {}
    key = spec.source
    if spec.is_file:  # an edited file is read again
        try:
            stat = Path(spec.source).stat()
            key = f"{spec.source}@{stat.st_mtime_ns}:{stat.st_size}"
        except OSError:
            pass  # calibration_text says what is wrong with it
    if key not in known:
        known[key] = tokenize(calibration_text(spec), tokenizer)
    return known[key]


def calibration_batches(spec: Calibration, tokenizer, context: int | None = None) -> list[torch.Tensor]:
    """`spec.samples` windows of min(seq_len, context) tokens, in (BATCH_ROWS, tokens) LongTensors."""
    seq_len = min(spec.seq_len, context) if context else spec.seq_len
    tokens = source_tokens(spec, tokenizer)
    if tokens.numel() < seq_len:
        raise CalibrationUnavailable(
            f"calibration source {spec.source!r} gives {tokens.numel()} tokens, fewer than seq_len {seq_len}; "
            "give more text or a smaller seq_len")
    generator = torch.Generator().manual_seed(spec.seed)
    starts = torch.randint(0, tokens.numel() - seq_len + 1, (spec.samples,), generator=generator)
    windows = torch.stack([tokens[s:s + seq_len] for s in starts.tolist()])
    return list(windows.split(BATCH_ROWS))

"""How each bundled family is built: its tokenizer, context, training text, batch, seed and sizes
(the shape, learning rate and training tokens of each member). Pure data, read by the builder, the
training loop and the id checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
    """The shape of one family member, its learning rate and its training tokens."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    lr: float
    tokens: int


@dataclass(frozen=True)
class Family:
    """How one family is built: tokenizer, context, training text, batch, and its sizes."""

    vocab_size: int
    context: int
    train_chapters: int | None  # None: every training chapter
    batch_size: int
    seed: int
    sizes: dict[str, Geometry]


FAMILIES: dict[str, Family] = {
    "micro": Family(
        vocab_size=384, context=128, train_chapters=200, batch_size=8, seed=1234,
        sizes={
            "m1": Geometry(hidden=16, layers=1, heads=2, intermediate=48, lr=1e-2, tokens=96_000),
            # 4x m1's tokens: on m1's 96K tokens m2 ends worse than m1 (held-out loss 4.76 vs 4.26
            # nats), on 384K better (3.33), and still builds in seconds.
            "m2": Geometry(hidden=32, layers=2, heads=2, intermediate=96, lr=1e-2, tokens=384_000),
        },
    ),
    # Sizes about 4x apart (~60K .. ~2.6M parameters), trained on more tokens the larger they are
    # (0.4M .. 1.6M; the training text holds 1.2M), so every step in size is a step in compute.
    # Small batches (many steps) and per-size learning rates matter most at this budget: batch 32
    # left the larger models no better than the smaller ones (docs/model-family.md).
    "demo": Family(
        vocab_size=1024, context=128, train_chapters=None, batch_size=8, seed=1234,
        sizes={
            "s1": Geometry(hidden=32, layers=2, heads=2, intermediate=96, lr=1e-2, tokens=400_000),
            "s2": Geometry(hidden=64, layers=3, heads=4, intermediate=192, lr=8e-3, tokens=800_000),
            "s3": Geometry(hidden=128, layers=4, heads=4, intermediate=384, lr=4e-3, tokens=1_200_000),
            "s4": Geometry(hidden=192, layers=5, heads=6, intermediate=576, lr=2e-3, tokens=1_600_000),
        },
    ),
}

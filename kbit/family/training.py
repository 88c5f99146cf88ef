"""Train one small Llama-style causal LM on a token stream: AdamW, linear warm-up then cosine decay,
a tqdm bar, deterministic given the seed (on one device and thread count). Uses a GPU when present.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from kbit.family.recipes import Geometry


@dataclass(frozen=True)
class TrainStats:
    n_params: int
    tokens: int
    steps: int
    seconds: float
    final_loss: float
    device: str


def llama_config(geometry: Geometry, vocab_size: int, context: int, eos_id: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=geometry.hidden,
        intermediate_size=geometry.intermediate,
        num_hidden_layers=geometry.layers,
        num_attention_heads=geometry.heads,
        num_key_value_heads=geometry.heads,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )


def windows(stream: torch.Tensor, context: int) -> torch.Tensor:
    """The token stream cut into non-overlapping rows of `context` tokens (the tail is dropped)."""
    n = stream.numel() // context
    return stream[: n * context].view(n, context)


def train_model(
    config: LlamaConfig,
    stream: torch.Tensor,
    *,
    tokens: int,
    batch_size: int,
    lr: float,
    seed: int,
    desc: str,
    device: str | None = None,
) -> tuple[LlamaForCausalLM, TrainStats]:
    """Train a fresh model from `config` on about `tokens` tokens of `stream` (wrapping around)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(device)
    rows = windows(stream, config.max_position_embeddings)
    steps = max(1, tokens // (batch_size * rows.shape[1]))
    warmup = max(1, steps // 20)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))),
    )
    order = torch.Generator().manual_seed(seed)
    perm, cursor, loss_value = torch.randperm(rows.shape[0], generator=order), 0, float("nan")
    started = time.perf_counter()
    model.train()
    # In a log or a pipe a bar cannot redraw in place: one line every 15 s instead of one per step.
    bar = tqdm(range(steps), desc=desc, unit="step", leave=False, mininterval=0.1 if sys.stderr.isatty() else 15.0)
    for _ in bar:
        if cursor + batch_size > perm.numel():
            perm, cursor = torch.randperm(rows.shape[0], generator=order), 0
        batch = rows[perm[cursor : cursor + batch_size]].to(device)
        cursor += batch_size
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)  # redrawn at tqdm's own pace
    model.eval()
    stats = TrainStats(
        n_params=sum(p.numel() for p in model.parameters()),
        tokens=steps * batch_size * rows.shape[1],
        steps=steps,
        seconds=time.perf_counter() - started,
        final_loss=loss_value,
        device=torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
    )
    return model.cpu(), stats

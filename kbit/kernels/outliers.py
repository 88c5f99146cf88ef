"""Outlier-dependent ("proxy") quantization from the paper (§3, App. D).

The p% hidden units with the largest weight standard deviation in the layer that *produces* a
layer's input are outlier candidates; that layer's input dimensions for those units stay in 16 bit.
This is input- and task-independent: only weights are read.

Which layer produces a Linear's input is read from module order (no forward pass): the most recent
earlier Linear or Embedding whose output width equals this layer's input width, skipping sibling
Linears that read the same input (same parent module, same input width: q/k/v, gate/up). For a
transformer that gives: residual-stream readers (q, k, v, gate, up) <- the previous block's writer
(o_proj, down_proj, or the embedding for the first block); down_proj <- up_proj.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def unit_std(module: nn.Module) -> torch.Tensor:
    """Standard deviation of the weights of each output hidden unit of a Linear or Embedding."""
    if isinstance(module, nn.Linear):
        return module.weight.detach().float().std(dim=1)
    if isinstance(module, nn.Embedding):
        return module.weight.detach().float().std(dim=0)
    raise TypeError(f"unit_std: expected nn.Linear or nn.Embedding, got {type(module).__name__}")


def outlier_count(width: int, fraction: float) -> int:
    """Number of dimensions kept in 16 bit: round(fraction * width), at least 1 when fraction > 0."""
    if fraction <= 0:
        return 0
    return min(width - 1, max(1, round(fraction * width)))


def top_units(stds: torch.Tensor, fraction: float) -> torch.Tensor:
    """Sorted indices (int64) of the `fraction` of units with the largest std."""
    count = outlier_count(stds.numel(), fraction)
    if count == 0:
        return torch.empty(0, dtype=torch.int64, device=stds.device)
    return stds.topk(count).indices.sort().values


def _out_width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.embedding_dim


def proxy_sources(model: nn.Module, targets: list[str]) -> dict[str, str | None]:
    """For each target Linear name, the name of the module whose output units proxy its inputs."""
    seen: list[tuple[str, nn.Module]] = []
    wanted = set(targets)
    sources: dict[str, str | None] = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            continue
        if name in wanted:
            parent = name.rpartition(".")[0]
            source = None
            for prev_name, prev in reversed(seen):
                sibling = (
                    isinstance(prev, nn.Linear)
                    and prev_name.rpartition(".")[0] == parent
                    and prev.in_features == module.in_features
                )
                if _out_width(prev) == module.in_features and not sibling:
                    source = prev_name
                    break
            sources[name] = source
        seen.append((name, module))
    return sources


def outlier_dims(model: nn.Module, targets: list[str], fraction: float) -> dict[str, torch.Tensor]:
    """Input dimensions to keep in 16 bit for each target Linear (read before anything is replaced).

    A layer with no producing layer found falls back to the std of its own input columns.
    """
    modules = dict(model.named_modules())
    dims = {}
    for name, source in proxy_sources(model, targets).items():
        if source is not None:
            stds = unit_std(modules[source])
        else:
            stds = modules[name].weight.detach().float().std(dim=0)
        dims[name] = top_units(stds, fraction)
    return dims


def expected_overhead(bits: int, fraction: float) -> float:
    """The paper's per-parameter cost of keeping `fraction` of inputs in 16 bit: p * (16 - k)."""
    return fraction * (16 - bits) if not math.isclose(fraction, 0.0) else 0.0

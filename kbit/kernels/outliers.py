"""Outlier-dependent ("proxy") quantization from the paper (§3, App. D).

The p% hidden units with the largest weight standard deviation in the layer that *produces* a
layer's input are outlier candidates; that layer's input dimensions for those units stay in 16 bit.
This is input- and task-independent: only weights are read.

Which layer produces a layer's input, and which of its output units, comes from the architecture
map (`kbit.kernels.architectures`, keyed on `config.model_type`): e.g. q/k/v read the residual
stream (the previous block's MLP down projection, the token embedding for the first block), the
attention output projection reads V (a slice of a fused qkv), a parallel-residual MLP reads the
block input. Unknown architectures fall back to module order, with a warning.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kbit.kernels.architectures import proxy_plan
from kbit.kernels.linear import is_quantizable, weight_matrix


def unit_std(module: nn.Module) -> torch.Tensor:
    """Standard deviation of the weights of each output hidden unit of a Linear, Conv1D or Embedding."""
    if isinstance(module, nn.Embedding):
        return module.weight.detach().float().std(dim=0)
    if is_quantizable(module):
        return weight_matrix(module).float().std(dim=1)
    raise TypeError(f"unit_std: expected nn.Linear, Conv1D or nn.Embedding, got {type(module).__name__}")


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


def proxy_sources(model: nn.Module, targets: list[str]) -> dict[str, str | None]:
    """For each target layer name, the name of the module whose output units proxy its inputs."""
    return {name: proxy.name for name, proxy in proxy_plan(model, targets).items()}


def outlier_dims(model: nn.Module, targets: list[str], fraction: float) -> dict[str, torch.Tensor]:
    """Input dimensions to keep in 16 bit for each target layer (read before anything is replaced).

    A layer with no producing layer found falls back to the std of its own input columns.
    """
    modules = dict(model.named_modules())
    dims = {}
    for name, proxy in proxy_plan(model, targets).items():
        if proxy.name is None:
            stds = weight_matrix(modules[name]).float().std(dim=0)
        else:
            stds = unit_std(modules[proxy.name])
            if proxy.units is not None:
                stds = stds[proxy.units.to(stds.device)]
        dims[name] = top_units(stds, fraction)
    return dims


def expected_overhead(bits: int, fraction: float) -> float:
    """The paper's per-parameter cost of keeping `fraction` of inputs in 16 bit: p * (16 - k)."""
    return fraction * (16 - bits) if not math.isclose(fraction, 0.0) else 0.0

"""Shared helpers of the kernel tests: heavy-tailed weights and the SQNR metric."""

import torch


def heavy_tailed(shape, seed: int = 0, dof: float = 3.0) -> torch.Tensor:
    """Student-t weights: the heavy tails of real LM weights (a few large outliers per block)."""
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(shape, generator=g)
    gamma = torch._standard_gamma(torch.full(shape, dof / 2), generator=g) * 2
    return normal / torch.sqrt(gamma / dof)


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    err = (x.float() - x_hat.float()).pow(2).mean()
    return float(10 * torch.log10(x.float().pow(2).mean() / err))

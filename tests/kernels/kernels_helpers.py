"""Shared helpers of the kernel tests: heavy-tailed weights, the SQNR metric, and whether the Triton
kernels run compiled on a GPU (KBIT_TEST_GPU=1) or in the interpreter."""

import os

import torch


def compiled_on_gpu() -> bool:
    """KBIT_TEST_GPU=1: run the Triton kernels compiled on CUDA (conftest.py leaves TRITON_INTERPRET unset)."""
    return os.environ.get("KBIT_TEST_GPU") == "1"


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

"""Choosing the kernel backend: `"auto"` (Triton on CUDA, torch otherwise), `"triton"`, `"torch"`.

Triton is imported only when a Triton kernel is actually used. On a CPU tensor the Triton backend
runs only under TRITON_INTERPRET=1 (the interpreter the tests use).
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import torch

from kbit.kernels.interpreter import interpreting

BACKENDS = ("auto", "triton", "torch")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve(backend: str, device: torch.device) -> str:
    """The concrete backend ("triton" or "torch") for tensors on `device`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed; use one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if not triton_available():
        raise ValueError("backend='triton' needs the triton package; install it or use backend='torch'")
    if device.type != "cuda" and not interpreting():
        raise ValueError(
            f"backend='triton' needs a CUDA tensor (got one on {device.type}); move it to a GPU, "
            "set TRITON_INTERPRET=1 before importing triton to run the kernels in the interpreter, "
            "or use backend='torch'"
        )
    return "triton"


def kernels(backend: str, device: torch.device) -> ModuleType:
    """The module holding quantize_blocks / dequantize_blocks / matmul_packed for this backend."""
    if resolve(backend, device) == "triton":
        from kbit.kernels import triton_kernels

        return triton_kernels
    from kbit.kernels import reference

    return reference

"""Blockwise k-bit quantization of whole tensors: `quantize`, `dequantize`, `matmul`, `embedding`
(rows of a quantized table), and the
`QuantizedTensor` that holds packed codes, 16-bit block scales and the codebook, with its bit
accounting (DESIGN.md "Bits are the x-axis").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kbit.kernels import backend as backends
from kbit.kernels.codebooks import codebook, quantile_codebook
from kbit.kernels.config import QuantConfig
from kbit.kernels.reference import block_scales, normalize

SCALE_BITS = 16
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_FP16_MAX = torch.finfo(torch.float16).max


@dataclass
class QuantizedTensor:
    """A k-bit blockwise-quantized tensor.

    codes: packed uint8 stream (see kbit.kernels.packing); absmax: one 16-bit scale per block;
    codebook: the ascending float32 values codes index into; shape/dtype: of the original tensor.
    """

    codes: torch.Tensor
    absmax: torch.Tensor
    codebook: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype
    config: QuantConfig

    @property
    def bits(self) -> int:
        return self.config.bits

    @property
    def blocksize(self) -> int | None:
        return self.config.blocksize

    @property
    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())

    @property
    def codebook_bits(self) -> int:
        """Bits of codebook stored with the tensor: only a data-dependent (quantile) codebook counts;
        fixed codebooks are constants of the format. Stored as float32."""
        return 32 * self.codebook.numel() if self.config.dtype == "quantile" else 0

    @property
    def total_bits(self) -> int:
        """k bits per element + 16 per block scale + stored codebook."""
        return self.numel * self.bits + SCALE_BITS * self.absmax.numel() + self.codebook_bits

    @property
    def bits_per_param(self) -> float:
        return self.total_bits / self.numel

    def to(self, device) -> "QuantizedTensor":
        return QuantizedTensor(
            self.codes.to(device), self.absmax.to(device), self.codebook.to(device), self.shape, self.dtype, self.config
        )


def check_input(w: torch.Tensor, cfg: QuantConfig) -> None:
    if not isinstance(cfg, QuantConfig):
        raise TypeError(f"quantize: cfg must be a QuantConfig, got {type(cfg).__name__}")
    if cfg.is_baseline:
        raise ValueError("quantize: a 16-bit baseline config has nothing to quantize; keep the tensor as it is")
    if not isinstance(w, torch.Tensor) or w.dtype not in FLOAT_DTYPES:
        got = w.dtype if isinstance(w, torch.Tensor) else type(w).__name__
        raise ValueError(f"quantize: expected a float16/bfloat16/float32 tensor, got {got}")
    if w.numel() == 0:
        raise ValueError("quantize: the tensor is empty; there is nothing to quantize")
    if not torch.isfinite(w).all():
        raise ValueError("quantize: the tensor holds inf or nan; quantize finite weights only")


def scale_dtype_for(w: torch.Tensor) -> torch.dtype:
    """fp16 scales (more mantissa) unless the weights exceed fp16's range, then bf16."""
    return torch.float16 if float(w.abs().max()) <= _FP16_MAX else torch.bfloat16


def codebook_for(w: torch.Tensor, cfg: QuantConfig, scale_dtype: torch.dtype) -> torch.Tensor:
    """The codebook `w` is quantized to: the data type's fixed one, or for `quantile` the one
    estimated from w's block-normalized values (x / absmax_b)."""
    if cfg.dtype == "quantile":
        return quantile_codebook(normalize(w, block_scales(w, cfg.blocksize, scale_dtype), cfg.blocksize), cfg.bits)
    return codebook(cfg.dtype, cfg.bits, cfg.exponent_bits)


def quantize(w: torch.Tensor, cfg: QuantConfig, backend: str = "auto", code: torch.Tensor | None = None) -> QuantizedTensor:
    """Quantize `w` blockwise (row-major flattened) to `cfg.bits` bits with `cfg.dtype`'s codebook.

    `code` overrides the codebook (ascending float32, at most 2**bits values, max |v| == 1).
    Outlier handling (cfg.outlier_fraction) is a layer-level choice made by QuantLinear.
    """
    check_input(w, cfg)
    scale_dtype = scale_dtype_for(w)
    if code is None:
        code = codebook_for(w, cfg, scale_dtype)
    elif code.numel() > 2**cfg.bits or code.numel() < 2:
        raise ValueError(f"quantize: a {cfg.bits}-bit codebook needs 2..{2**cfg.bits} values, got {code.numel()}")
    code = code.to(device=w.device, dtype=torch.float32).contiguous()
    impl = backends.kernels(backend, w.device)
    packed, absmax = impl.quantize_blocks(w.contiguous(), code, cfg.bits, cfg.blocksize, scale_dtype)
    return QuantizedTensor(packed, absmax, code, w.shape, w.dtype, cfg)


def dequantize(qt: QuantizedTensor, backend: str = "auto", dtype: torch.dtype | None = None) -> torch.Tensor:
    """The tensor `qt` approximates, with its original shape and dtype (or `dtype`)."""
    impl = backends.kernels(backend, qt.codes.device)
    flat = impl.dequantize_blocks(qt.codes, qt.absmax, qt.codebook, qt.bits, qt.blocksize, qt.numel, dtype or qt.dtype)
    return flat.view(qt.shape)


def matmul(x: torch.Tensor, qt: QuantizedTensor, backend: str = "auto") -> torch.Tensor:
    """x (..., K) @ W.T for a quantized 2-D weight W of shape (N, K), without materializing W
    on the Triton backend (GEMV for one row, GEMM otherwise). Returns x.dtype."""
    if len(qt.shape) != 2:
        raise ValueError(f"matmul: the quantized weight must be 2-D (out, in), got shape {tuple(qt.shape)}")
    n_out, k_in = qt.shape
    if x.shape[-1] != k_in:
        raise ValueError(f"matmul: input has {x.shape[-1]} features but the weight expects {k_in}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"matmul: expected a float16/bfloat16/float32 input, got {x.dtype}")
    impl = backends.kernels(backend, x.device)
    x2 = x.reshape(-1, k_in).contiguous()
    y = impl.matmul_packed(x2, qt.codes, qt.absmax, qt.codebook, qt.bits, qt.blocksize, n_out, k_in)
    return y.view(*x.shape[:-1], n_out)


def embedding(ids: torch.Tensor, qt: QuantizedTensor, backend: str = "auto", dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rows `ids` of a quantized 2-D table (rows, dim), dequantized: (*ids.shape, dim). On the
    Triton backend only the rows looked up are decoded."""
    if len(qt.shape) != 2:
        raise ValueError(f"embedding: the quantized table must be 2-D (rows, dim), got shape {tuple(qt.shape)}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"embedding: ids must be an int32 or int64 tensor, got {ids.dtype}")
    n_rows, dim = qt.shape
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_rows):
        raise IndexError(f"embedding: ids must lie in [0, {n_rows}); got [{int(ids.min())}, {int(ids.max())}]")
    impl = backends.kernels(backend, qt.codes.device)
    return impl.embedding_rows(ids.to(qt.codes.device), qt.codes, qt.absmax, qt.codebook, qt.bits, qt.blocksize,
                               n_rows, dim, dtype or qt.dtype)

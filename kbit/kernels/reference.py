"""Plain-torch reference kernels: blockwise quantize, dequantize and the dequantize-matmul.

These define the numerics the Triton kernels reproduce, with the same signatures:
- blocks are contiguous runs of `blocksize` elements of the row-major flattened tensor (the last
  one may be partial); `blocksize=None` means one block for the whole tensor;
- a block's scale is its absmax rounded to the 16-bit `scale_dtype`; values are divided by that
  rounded scale in fp32, clamped to [-1, 1] and mapped to the nearest codebook entry (ties go to
  the lower entry: the count of codebook midpoints strictly below the value);
- dequantization is codebook[code] * scale in fp32, then cast to the output dtype;
- the matmul accumulates in fp32;
- an embedding lookup returns rows of the (rows, dim) tensor, dequantized exactly as above.
"""

from __future__ import annotations

import torch

from kbit.kernels.packing import pack, unpack


def midpoints(code: torch.Tensor) -> torch.Tensor:
    """Decision thresholds between neighbouring codebook entries (fp32)."""
    code = code.to(torch.float32)
    return (code[1:] + code[:-1]) / 2


def block_scales(x: torch.Tensor, blocksize: int | None, scale_dtype: torch.dtype) -> torch.Tensor:
    """Per-block absmax of the flattened tensor, rounded to `scale_dtype` (16-bit)."""
    flat = x.reshape(-1).to(torch.float32).abs()
    if blocksize is None:
        return flat.amax().reshape(1).to(scale_dtype)
    n_blocks = -(-flat.numel() // blocksize)
    padded = torch.zeros(n_blocks * blocksize, dtype=torch.float32, device=flat.device)
    padded[: flat.numel()] = flat
    return padded.view(n_blocks, blocksize).amax(dim=1).to(scale_dtype)


def _per_element_scale(absmax: torch.Tensor, numel: int, blocksize: int | None) -> torch.Tensor:
    scale = absmax.to(torch.float32)
    if blocksize is None:
        return scale.expand(numel)
    return scale.repeat_interleave(blocksize)[:numel]


def normalize(x: torch.Tensor, absmax: torch.Tensor, blocksize: int | None) -> torch.Tensor:
    """x / scale per block in fp32, clamped to [-1, 1] (an all-zero block keeps scale 1)."""
    flat = x.reshape(-1).to(torch.float32)
    scale = _per_element_scale(absmax, flat.numel(), blocksize)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return (flat / scale).clamp_(-1.0, 1.0)


def quantize_blocks(
    x: torch.Tensor, code: torch.Tensor, bits: int, blocksize: int | None, scale_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize `x` blockwise to the ascending codebook `code`: (packed uint8 codes, 16-bit absmax)."""
    absmax = block_scales(x, blocksize, scale_dtype)
    xn = normalize(x, absmax, blocksize)
    idx = torch.bucketize(xn, midpoints(code).to(xn.device), right=False)
    return pack(idx, bits), absmax


def dequantize_blocks(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    bits: int,
    blocksize: int | None,
    numel: int,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """Flat tensor of `numel` values: code[idx] * absmax[block] in fp32, cast to `out_dtype`."""
    idx = unpack(packed, bits, numel).long()
    values = code.to(torch.float32).to(packed.device)[idx]
    return (values * _per_element_scale(absmax, numel, blocksize)).to(out_dtype)


def matmul_packed(
    x: torch.Tensor,
    packed: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    bits: int,
    blocksize: int | None,
    out_features: int,
    in_features: int,
) -> torch.Tensor:
    """x (M, K) @ W.T for the packed (N, K) weight W, accumulated in fp32; returns x.dtype."""
    w = dequantize_blocks(packed, absmax, code, bits, blocksize, out_features * in_features, torch.float32)
    return (x.to(torch.float32) @ w.view(out_features, in_features).T).to(x.dtype)


def embedding_rows(
    ids: torch.Tensor,
    packed: torch.Tensor,
    absmax: torch.Tensor,
    code: torch.Tensor,
    bits: int,
    blocksize: int | None,
    n_rows: int,
    dim: int,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """Rows `ids` (any shape) of the packed (n_rows, dim) table: (*ids.shape, dim) in `out_dtype`."""
    table = dequantize_blocks(packed, absmax, code, bits, blocksize, n_rows * dim, out_dtype).view(n_rows, dim)
    return table[ids.long()]

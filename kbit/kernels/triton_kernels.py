"""Triton kernels with the signatures of kbit.kernels.reference: blockwise quantize, dequantize and
the fused dequantize-matmul (a split-K GEMV for one row, a tiled tensor-core GEMM for batches).

Imported only when the Triton backend is used. Every kernel reads the packed MSB-first stream
(kbit.kernels.packing) directly: element i's code sits in byte (i*k) >> 3 and, when it straddles
(k = 3, 5, 6, 7), the byte after it; codebooks of up to 256 entries are looked up with a gather
from a small fp32 table (L1-resident), scales are one 16-bit load per element (broadcast within a
block). Values are upcast to fp32 right after every load: the interpreter's bf16 arithmetic is
wrong, and fp32 accumulation is what the reference does.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kbit.kernels.interpreter import interpreting
from kbit.kernels.packing import packed_nbytes
from kbit.kernels.reference import block_scales, midpoints

INTERPRET = interpreting()
# The interpreter runs programs one after another in Python: give each program more work.
QUANT_TILE = 16384 if INTERPRET else 4096
DEQUANT_TILE = 16384 if INTERPRET else 2048


@triton.jit
def _decode(codes_ptr, idx, mask, K_BITS: tl.constexpr, STRADDLE: tl.constexpr):
    """Codes of the elements at flat indices `idx` from the MSB-first k-bit stream."""
    bitpos = idx * K_BITS
    byte = bitpos >> 3
    off = bitpos & 7
    b0 = tl.load(codes_ptr + byte, mask=mask, other=0).to(tl.int32)
    if STRADDLE:
        spill = mask & (off + K_BITS > 8)
        b1 = tl.load(codes_ptr + byte + 1, mask=spill, other=0).to(tl.int32)
        code = (((b0 << 8) | b1) >> (16 - K_BITS - off)) & ((1 << K_BITS) - 1)
    else:
        code = (b0 >> (8 - K_BITS - off)) & ((1 << K_BITS) - 1)
    return code


@triton.jit
def _scale(absmax_ptr, idx, mask, LOG2B: tl.constexpr, PER_TENSOR: tl.constexpr):
    if PER_TENSOR:
        s = tl.load(absmax_ptr).to(tl.float32)
    else:
        s = tl.load(absmax_ptr + (idx >> LOG2B), mask=mask, other=0.0).to(tl.float32)
    return s


@triton.jit
def _weights(codes_ptr, absmax_ptr, cb_ptr, idx, mask, K_BITS: tl.constexpr, STRADDLE: tl.constexpr,
             LOG2B: tl.constexpr, PER_TENSOR: tl.constexpr):
    """Dequantized fp32 weights codebook[code] * scale at flat indices `idx`."""
    code = _decode(codes_ptr, idx, mask, K_BITS, STRADDLE)
    value = tl.load(cb_ptr + code, mask=mask, other=0.0)
    return value * _scale(absmax_ptr, idx, mask, LOG2B, PER_TENSOR)


@triton.jit
def _quantize_kernel(x_ptr, mids_ptr, absmax_ptr, out_ptr, n, n_blocks, n_bytes,
                     K_BITS: tl.constexpr, SEARCH_STEPS: tl.constexpr, BLOCK: tl.constexpr,
                     BPP: tl.constexpr, PER_TENSOR: tl.constexpr, SCALES_GIVEN: tl.constexpr,
                     BIG: tl.constexpr):
    pid = tl.program_id(0)
    if BIG:
        pid = pid.to(tl.int64)
    rows = pid * BPP + tl.arange(0, BPP)
    idx = rows[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :]
    mask = idx < n
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    if PER_TENSOR:
        scale = tl.load(absmax_ptr).to(tl.float32)
    elif SCALES_GIVEN:
        scale = tl.load(absmax_ptr + rows, mask=rows < n_blocks, other=1.0).to(tl.float32)[:, None]
    else:
        amax = tl.max(tl.abs(x), axis=1).to(absmax_ptr.dtype.element_ty)
        tl.store(absmax_ptr + rows, amax, mask=rows < n_blocks)
        scale = amax.to(tl.float32)[:, None]
    scale = tl.where(scale == 0.0, 1.0, scale)
    xn = tl.minimum(tl.maximum(x / scale, -1.0), 1.0)
    # uniform binary search: the number of midpoints strictly below xn (mids padded with +inf)
    pos = tl.zeros([BPP, BLOCK], dtype=tl.int32)
    for s in tl.static_range(SEARCH_STEPS):
        step = 1 << (SEARCH_STEPS - 1 - s)
        probe = tl.load(mids_ptr + pos + (step - 1))
        pos = tl.where(probe < xn, pos + step, pos)
    code = tl.where(mask, pos, 0).to(tl.int64)
    # pack: 8 codes make one 8*k-bit word, written as k bytes
    GROUPS: tl.constexpr = BPP * BLOCK // 8
    lane = tl.arange(0, 8)
    word = tl.sum(tl.reshape(code, (GROUPS, 8)) << (K_BITS * (7 - lane))[None, :], axis=1)
    byte_shift = tl.where(lane < K_BITS, 8 * (K_BITS - 1 - lane), 0)
    packed = (word[:, None] >> byte_shift[None, :]) & 255
    out = (pid * GROUPS + tl.arange(0, GROUPS))[:, None] * K_BITS + lane[None, :]
    tl.store(out_ptr + out, packed.to(tl.uint8), mask=(lane[None, :] < K_BITS) & (out < n_bytes))


@triton.jit
def _dequantize_kernel(codes_ptr, absmax_ptr, cb_ptr, out_ptr, n,
                       K_BITS: tl.constexpr, STRADDLE: tl.constexpr, LOG2B: tl.constexpr,
                       PER_TENSOR: tl.constexpr, TILE: tl.constexpr, BIG: tl.constexpr):
    pid = tl.program_id(0)
    if BIG:
        pid = pid.to(tl.int64)
    idx = pid * TILE + tl.arange(0, TILE)
    mask = idx < n
    w = _weights(codes_ptr, absmax_ptr, cb_ptr, idx, mask, K_BITS, STRADDLE, LOG2B, PER_TENSOR)
    tl.store(out_ptr + idx, w.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _embedding_kernel(ids_ptr, codes_ptr, absmax_ptr, cb_ptr, out_ptr, dim,
                      K_BITS: tl.constexpr, STRADDLE: tl.constexpr, LOG2B: tl.constexpr,
                      PER_TENSOR: tl.constexpr, TILE: tl.constexpr):
    """One looked-up row per program along axis 0, `TILE` columns of it per program along axis 1:
    only the rows asked for are decoded (the table is never materialized)."""
    token = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * TILE + tl.arange(0, TILE)
    mask = cols < dim
    row = tl.load(ids_ptr + token).to(tl.int64)
    w = _weights(codes_ptr, absmax_ptr, cb_ptr, row * dim + cols, mask, K_BITS, STRADDLE, LOG2B, PER_TENSOR)
    tl.store(out_ptr + token * dim + cols, w.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gemv_kernel(x_ptr, codes_ptr, absmax_ptr, cb_ptr, out_ptr, N, K, k_per_split,
                 K_BITS: tl.constexpr, STRADDLE: tl.constexpr, LOG2B: tl.constexpr,
                 PER_TENSOR: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 SPLIT_K: tl.constexpr, BIG: tl.constexpr):
    """out[N] (+)= W[rows, k-slice] @ x[k-slice]; split-K programs add into a zeroed fp32 output."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if BIG:
        rows = rows.to(tl.int64)
    row_mask = rows < N
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    k_start = pid_k * k_per_split
    for k0 in range(0, k_per_split, BLOCK_K):
        cols = k_start + k0 + tl.arange(0, BLOCK_K)
        col_mask = cols < K
        x = tl.load(x_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
        mask = row_mask[:, None] & col_mask[None, :]
        w = _weights(codes_ptr, absmax_ptr, cb_ptr, rows[:, None] * K + cols[None, :], mask,
                     K_BITS, STRADDLE, LOG2B, PER_TENSOR)
        acc += tl.sum(w * x[None, :], axis=1)
    if SPLIT_K == 1:
        tl.store(out_ptr + rows, acc, mask=row_mask)
    else:
        tl.atomic_add(out_ptr + rows, acc, mask=row_mask)


@triton.jit
def _gemm_kernel(x_ptr, codes_ptr, absmax_ptr, cb_ptr, out_ptr, M, N, K,
                 K_BITS: tl.constexpr, STRADDLE: tl.constexpr, LOG2B: tl.constexpr,
                 PER_TENSOR: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, DOT_FP32: tl.constexpr, BIG: tl.constexpr):
    """out[M, N] = x[M, K] @ W[N, K]^T, W dequantized tile by tile in registers, fp32 accumulation."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if BIG:
        rm = rm.to(tl.int64)
        rn = rn.to(tl.int64)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_mask = rk < K
        x = tl.load(x_ptr + rm[:, None] * K + rk[None, :], mask=(rm < M)[:, None] & k_mask[None, :], other=0.0)
        mask = k_mask[:, None] & (rn < N)[None, :]
        w = _weights(codes_ptr, absmax_ptr, cb_ptr, rn[None, :] * K + rk[:, None], mask,
                     K_BITS, STRADDLE, LOG2B, PER_TENSOR)
        if DOT_FP32:
            acc += tl.dot(x.to(tl.float32), w, input_precision="ieee")
        else:
            acc = tl.dot(x, w.to(x.dtype), acc)
    out_mask = (rm < M)[:, None] & (rn < N)[None, :]
    tl.store(out_ptr + rm[:, None] * N + rn[None, :], acc.to(out_ptr.dtype.element_ty), mask=out_mask)


def _layout(bits: int, blocksize: int | None) -> dict:
    per_tensor = blocksize is None
    return dict(
        K_BITS=bits,
        STRADDLE=8 % bits != 0,
        LOG2B=0 if per_tensor else int(math.log2(blocksize)),
        PER_TENSOR=per_tensor,
    )


def _store_dtype(dtype: torch.dtype) -> torch.dtype:
    """The interpreter truncates fp32 -> bf16 stores: store fp32 there and round with torch."""
    return torch.float32 if INTERPRET and dtype == torch.bfloat16 else dtype


def _big(numel: int) -> bool:
    return numel * 8 >= 2**31


def quantize_blocks(x, code, bits, blocksize, scale_dtype):
    """Triton twin of reference.quantize_blocks."""
    flat = x.reshape(-1)
    n = flat.numel()
    # the interpreter truncates fp32 -> bf16 instead of rounding to nearest: round bf16 scales on the host
    scales_given = INTERPRET and scale_dtype == torch.bfloat16
    steps = max(1, math.ceil(math.log2(code.numel())))
    mids = torch.full((2**steps,), float("inf"), dtype=torch.float32, device=x.device)
    mids[: code.numel() - 1] = midpoints(code)
    out = torch.empty(packed_nbytes(n, bits), dtype=torch.uint8, device=x.device)
    if blocksize is None:
        absmax = flat.abs().amax().to(torch.float32).reshape(1).to(scale_dtype)
        block, n_blocks = min(QUANT_TILE, max(8, triton.next_power_of_2(n))), 1
    else:
        n_blocks = -(-n // blocksize)
        block = blocksize
        if scales_given:
            absmax = block_scales(flat, blocksize, scale_dtype)
        else:
            absmax = torch.empty(n_blocks, dtype=scale_dtype, device=x.device)
    bpp = max(1, QUANT_TILE // block)
    grid = (triton.cdiv(n, bpp * block),)
    _quantize_kernel[grid](
        flat, mids, absmax, out, n, n_blocks, out.numel(), K_BITS=bits, SEARCH_STEPS=steps, BLOCK=block,
        BPP=bpp, PER_TENSOR=blocksize is None, SCALES_GIVEN=scales_given, BIG=_big(n),
    )
    return out, absmax


def dequantize_blocks(packed, absmax, code, bits, blocksize, numel, out_dtype):
    """Triton twin of reference.dequantize_blocks."""
    out = torch.empty(numel, dtype=_store_dtype(out_dtype), device=packed.device)
    grid = (triton.cdiv(numel, DEQUANT_TILE),)
    _dequantize_kernel[grid](
        packed, absmax, code, out, numel, TILE=DEQUANT_TILE, BIG=_big(numel), **_layout(bits, blocksize)
    )
    return out.to(out_dtype)


def embedding_rows(ids, packed, absmax, code, bits, blocksize, n_rows, dim, out_dtype):
    """Triton twin of reference.embedding_rows."""
    flat = ids.reshape(-1).to(torch.int64).contiguous()
    out = torch.empty(flat.numel(), dim, dtype=_store_dtype(out_dtype), device=packed.device)
    if flat.numel():
        tile = min(1024, triton.next_power_of_2(dim))
        grid = (flat.numel(), triton.cdiv(dim, tile))
        _embedding_kernel[grid](flat, packed, absmax, code, out, dim, TILE=tile, **_layout(bits, blocksize))
    return out.to(out_dtype).view(*ids.shape, dim)


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4  # interpreter: a handful of programs keeps tests fast and still exercises split-K
    return torch.cuda.get_device_properties(device).multi_processor_count


def gemv_config(n_out: int, k_in: int, device: torch.device) -> dict:
    """Tile sizes and split-K for one row: enough programs to fill every SM a few times over."""
    if INTERPRET:
        block_n, block_k = 32, 128
    else:
        block_n, block_k = 16, 256
    tiles = triton.cdiv(n_out, block_n)
    k_chunks = triton.cdiv(k_in, block_k)
    split_k = max(1, min(k_chunks, triton.cdiv(4 * _sm_count(device), tiles)))
    k_per_split = triton.cdiv(k_chunks, split_k) * block_k
    split_k = triton.cdiv(k_in, k_per_split)
    return dict(BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=split_k, k_per_split=k_per_split, num_warps=4)


def gemm_config(m: int, n_out: int) -> dict:
    block_m = 16 if m <= 16 else (32 if m <= 32 else 64)
    return dict(BLOCK_M=block_m, BLOCK_N=64, BLOCK_K=64, num_warps=4)


def matmul_packed(x, packed, absmax, code, bits, blocksize, out_features, in_features):
    """Triton twin of reference.matmul_packed: GEMV for a single row, GEMM otherwise."""
    m = x.shape[0]
    layout = _layout(bits, blocksize)
    big = _big(out_features * in_features)
    if m == 1:
        cfg = gemv_config(out_features, in_features, x.device)
        split_k, k_per_split, warps = cfg.pop("SPLIT_K"), cfg.pop("k_per_split"), cfg.pop("num_warps")
        out = torch.zeros(out_features, dtype=torch.float32, device=x.device)
        grid = (triton.cdiv(out_features, cfg["BLOCK_N"]), split_k)
        _gemv_kernel[grid](
            x, packed, absmax, code, out, out_features, in_features, k_per_split,
            SPLIT_K=split_k, BIG=big, num_warps=warps, **cfg, **layout,
        )
        return out.to(x.dtype).view(1, out_features)
    cfg = gemm_config(m, out_features)
    warps = cfg.pop("num_warps")
    out = torch.empty(m, out_features, dtype=_store_dtype(x.dtype), device=x.device)
    grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(out_features, cfg["BLOCK_N"]))
    _gemm_kernel[grid](
        x, packed, absmax, code, out, m, out_features, in_features,
        DOT_FP32=INTERPRET or x.dtype == torch.float32, BIG=big, num_warps=warps, **cfg, **layout,
    )
    return out.to(x.dtype)

"""Triton kernels against the torch references (TRITON_INTERPRET=1 on CPU, see conftest.py; compiled
on a GPU with KBIT_TEST_GPU=1, where the grid widens to every k x data type x input dtype and a
weight large enough for 64-bit indexing is added). Quantize and dequantize are bit-exact; the
matmuls agree to accumulation-order rounding."""

import itertools

import pytest
import torch
from kernels_helpers import compiled_on_gpu, heavy_tailed
from torch import nn

from kbit.kernels import QuantConfig, QuantLinear, dequantize, quantize
from kbit.kernels import backend as backends
from kbit.kernels.blockwise import matmul

BITS = tuple(range(2, 9))
DTYPES = ("int", "fp", "nf", "quantile", "dynamic")
BLOCKSIZES = (32, 64, 256, 4096, None)
FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _cases(every_input_dtype: bool) -> list[tuple]:
    """Every (bits, dtype) pair; block size and input dtype cycle so that each value of each axis
    occurs. Compiled on a GPU (cheap there) every pair also runs with every input dtype."""
    if not every_input_dtype:
        return [(k, dt, BLOCKSIZES[i % 5], FLOATS[i % 3]) for i, (k, dt) in enumerate(itertools.product(BITS, DTYPES))]
    grid = itertools.product(BITS, DTYPES, FLOATS)
    return [(k, dt, BLOCKSIZES[i % 5], f) for i, (k, dt, f) in enumerate(grid)]


CASES = _cases(every_input_dtype=compiled_on_gpu())
TOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}


def _weight(shape, dtype, seed, device):
    return heavy_tailed(shape, seed=seed).to(dtype).to(device)


def _assert_same_quantization(w, cfg):
    ref = quantize(w, cfg, backend="torch")
    tri = quantize(w, cfg, backend="triton")
    assert torch.equal(tri.codes, ref.codes)
    assert torch.equal(tri.absmax, ref.absmax)
    for qt in (ref, tri):
        a, b = dequantize(qt, backend="torch"), dequantize(qt, backend="triton")
        assert a.dtype == b.dtype == w.dtype and a.shape == b.shape == w.shape
        assert torch.equal(a, b)
    return ref


@pytest.mark.parametrize("bits, dtype, blocksize, in_dtype", CASES)
def test_quantize_and_dequantize_match_reference(bits, dtype, blocksize, in_dtype, device):
    cfg = QuantConfig(bits, dtype, blocksize, exponent_bits=None)
    _assert_same_quantization(_weight((45, 181), in_dtype, bits, device), cfg)  # 8145: no multiple of a block


@pytest.mark.parametrize("blocksize, in_dtype", list(itertools.product(BLOCKSIZES, FLOATS)))
def test_all_block_sizes_and_input_dtypes_at_3_bits(blocksize, in_dtype, device):
    _assert_same_quantization(_weight((3, 1111), in_dtype, 7, device), QuantConfig(3, "fp", blocksize))


def test_ties_and_saturation_match(device):
    code_mid = (torch.tensor([0.0, 1 / 7, 2 / 7, 3 / 7]) + 1 / 14)  # exact decision thresholds of int4
    w = torch.cat([torch.tensor([1.0, -1.0]), code_mid, -code_mid, torch.zeros(58)]).to(device)
    _assert_same_quantization(w, QuantConfig(4, "int", 32))
    huge = (heavy_tailed((9, 70), seed=2) * 1e5).to(device)  # beyond fp16: bf16 scales
    assert quantize(huge, QuantConfig(4, "nf", 64), backend="triton").absmax.dtype == torch.bfloat16
    _assert_same_quantization(huge, QuantConfig(4, "nf", 64))


def _assert_matmul_matches(x, qt):
    ref = matmul(x, qt, backend="torch")
    tri = matmul(x, qt, backend="triton")
    assert tri.shape == ref.shape and tri.dtype == ref.dtype == x.dtype
    scale = ref.float().abs().max().clamp_min(1e-6)
    err = (tri.float() - ref.float()).abs().max() / scale
    assert err < TOL[x.dtype], float(err)


@pytest.mark.parametrize("bits, dtype, blocksize, in_dtype", CASES)
def test_fused_gemv_and_gemm_match_reference(bits, dtype, blocksize, in_dtype, device):
    w = _weight((37, 300), in_dtype, bits + 10, device)
    qt = quantize(w, QuantConfig(bits, dtype, blocksize), backend="torch")
    g = torch.Generator().manual_seed(bits)
    _assert_matmul_matches(torch.randn(1, 300, generator=g).to(in_dtype).to(device), qt)  # GEMV, split-K
    _assert_matmul_matches(torch.randn(2, 3, 300, generator=g).to(in_dtype).to(device), qt)  # GEMM


def test_gemv_splits_k_and_gemm_tiles_rows(device):
    from kbit.kernels import triton_kernels

    assert triton_kernels.gemv_config(37, 300, torch.device(device))["SPLIT_K"] > 1
    w = _weight((130, 200), torch.float32, 3, device)
    qt = quantize(w, QuantConfig(5, "nf", 64), backend="triton")
    _assert_matmul_matches(torch.randn(70, 200).to(device), qt)  # several M and N tiles, ragged edges


@pytest.mark.skipif(not compiled_on_gpu(), reason="2**28 elements: GPU only (KBIT_TEST_GPU=1)")
@pytest.mark.parametrize("in_dtype", [torch.float16, torch.bfloat16])
def test_weights_past_2_31_bits_use_64_bit_indexing(in_dtype, device):
    """16384 x 16400 codes span more than 2**31 bits, so the kernels index in int64 (BIG)."""
    g = torch.Generator(device=device).manual_seed(0)
    w = torch.randn(16384, 16400, generator=g, device=device, dtype=in_dtype)
    cfg = QuantConfig(3, "nf", 64)  # 3 bits: codes straddle bytes
    ref = _assert_same_quantization(w, cfg)
    x = torch.randn(1, 16400, generator=g, device=device, dtype=in_dtype)
    _assert_matmul_matches(x, ref)  # GEMV
    _assert_matmul_matches(torch.cat([x, -x, 2 * x]), ref)  # GEMM


def test_quantlinear_triton_forward_matches_torch(device):
    torch.manual_seed(0)
    layer = nn.Linear(96, 40).to(device)
    x = torch.randn(3, 96, device=device)
    for outliers in (None, torch.tensor([3, 50, 77])):
        fast = QuantLinear(layer, QuantConfig(3, "nf", 32), outlier_idx=outliers, backend="triton")
        slow = QuantLinear(layer, QuantConfig(3, "nf", 32), outlier_idx=outliers, backend="torch")
        torch.testing.assert_close(fast(x), slow(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast(x[:1]), slow(x[:1]), rtol=1e-4, atol=1e-4)


def test_backend_resolution(monkeypatch):
    assert backends.resolve("auto", torch.device("cpu")) == "torch"
    assert backends.resolve("torch", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="backend='fast' is not allowed"):
        backends.resolve("fast", torch.device("cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        backends.resolve("triton", torch.device("cpu"))

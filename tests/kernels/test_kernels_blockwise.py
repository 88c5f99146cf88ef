"""Blockwise quantization with the torch reference: round trips, error ordering, bit accounting,
agreement with bitsandbytes, and clear errors."""

import bitsandbytes.functional as bnbf
import pytest
import torch
from kernels_helpers import heavy_tailed, sqnr_db

from kbit.kernels import QuantConfig, codebook, dequantize, quantize
from kbit.kernels.blockwise import matmul
from kbit.kernels.packing import packed_nbytes

DTYPES = ("int", "fp", "nf", "quantile", "dynamic")


@pytest.mark.parametrize("dtype", ["int", "fp", "nf", "dynamic"])
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_on_grid_values_round_trip_exactly(dtype, bits):
    code = codebook(dtype, bits)
    g = torch.Generator().manual_seed(bits)
    blocks = 11
    idx = torch.randint(0, code.numel(), (blocks, 64), generator=g)
    idx[:, 0] = code.abs().argmax()  # every block holds a +-1 entry, so its absmax is its scale
    scales = torch.rand(blocks, 1, generator=g).add(0.5).to(torch.float16).float()
    w = (code[idx] * scales).reshape(-1)[:700]  # odd length: a partial last block
    qt = quantize(w, QuantConfig(bits, dtype, 64), backend="torch")
    assert torch.equal(dequantize(qt, backend="torch"), w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sqnr_rises_with_bits(dtype):
    w = heavy_tailed((64, 256), seed=3)
    sqnr = [sqnr_db(w, dequantize(quantize(w, QuantConfig(k, dtype, 64), backend="torch"))) for k in range(2, 9)]
    assert all(b > a for a, b in zip(sqnr, sqnr[1:])), sqnr


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_blocks_beat_large_blocks_at_4_bits_on_heavy_tails(dtype):
    w = heavy_tailed((128, 512), seed=4)
    small = sqnr_db(w, dequantize(quantize(w, QuantConfig(4, dtype, 64), backend="torch")))
    large = sqnr_db(w, dequantize(quantize(w, QuantConfig(4, dtype, 4096), backend="torch")))
    assert small > large + 1.0, (small, large)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("blocksize", [32, 64, 4096, None])
def test_bit_accounting_matches_formula_and_buffers(bits, blocksize):
    w = torch.randn(48, 320)
    qt = quantize(w, QuantConfig(bits, "nf", blocksize), backend="torch")
    n = w.numel()
    n_blocks = 1 if blocksize is None else -(-n // blocksize)
    assert qt.codes.dtype == torch.uint8 and qt.codes.numel() == packed_nbytes(n, bits)
    assert qt.codes.numel() * 8 - n * bits < 8 * bits  # packing: k bits per weight, at most k-1 bytes padding
    assert qt.absmax.numel() == n_blocks and qt.absmax.element_size() == 2
    assert qt.total_bits == n * bits + 16 * n_blocks
    if blocksize is not None and n % blocksize == 0:
        assert qt.bits_per_param == bits + 16 / blocksize


def test_quantile_codebook_bits_are_counted():
    w = torch.randn(64, 64)
    qt = quantize(w, QuantConfig(4, "quantile", 64), backend="torch")
    assert qt.codebook.numel() == 16
    assert qt.total_bits == w.numel() * 4 + 16 * (w.numel() // 64) + 32 * 16


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_dequantize_keeps_shape_and_dtype(dtype):
    w = torch.randn(5, 7, 9).to(dtype)
    w_hat = dequantize(quantize(w, QuantConfig(4, "fp", 32), backend="torch"), backend="torch")
    assert w_hat.shape == w.shape and w_hat.dtype == dtype
    assert sqnr_db(w, w_hat) > 10


def test_zero_block_and_huge_weights():
    w = torch.zeros(128)
    w[64:] = torch.linspace(-1, 1, 64)
    qt = quantize(w, QuantConfig(4, "int", 64), backend="torch")
    assert torch.equal(dequantize(qt)[:64], torch.zeros(64))
    big = torch.tensor([1e5, -2e5, 3.0, 0.0])  # beyond fp16: scales fall back to bf16
    qt = quantize(big, QuantConfig(8, "int", 32), backend="torch")
    assert qt.absmax.dtype == torch.bfloat16
    torch.testing.assert_close(dequantize(qt), big, rtol=0.01, atol=2e3)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("blocksize", [64, 256])
def test_matches_bitsandbytes_4bit(quant_type, blocksize):
    # bnb 0.50.2 on CPU is only right when blocksize <= the last dim, so use shapes where it is
    w = heavy_tailed((32, 512), seed=5)
    bnb_packed, state = bnbf.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type)
    bnb_hat = bnbf.dequantize_4bit(bnb_packed, state)
    code = bnbf.get_4bit_type(quant_type, device="cpu")
    if quant_type == "nf4":
        qt = quantize(w, QuantConfig(4, "nf", blocksize), backend="torch")
        assert torch.equal(qt.codebook, code)
    else:
        qt = quantize(w, QuantConfig(4, "fp", blocksize), backend="torch", code=code.sort().values)
    ours = dequantize(qt, backend="torch")
    # bnb keeps fp32 scales, kbit 16-bit ones; ties may round differently: allow a few codes
    close = torch.isclose(ours, bnb_hat, rtol=2e-3, atol=1e-6)
    assert close.float().mean() > 0.995
    assert abs(sqnr_db(w, ours) - sqnr_db(w, bnb_hat)) < 0.05
    if quant_type == "nf4":
        same_codes = (qt.codes == bnb_packed.reshape(-1)).float().mean()
        assert same_codes > 0.99


def test_matmul_reference_equals_dense_product():
    w = torch.randn(40, 72)
    qt = quantize(w, QuantConfig(5, "dynamic", 32), backend="torch")
    x = torch.randn(2, 3, 72)
    torch.testing.assert_close(matmul(x, qt, backend="torch"), x @ dequantize(qt).T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: quantize(torch.randn(8), QuantConfig(16)), "16-bit baseline"),
        (lambda: quantize(torch.randint(0, 3, (8,)), QuantConfig(4)), "float16/bfloat16/float32"),
        (lambda: quantize(torch.empty(0), QuantConfig(4)), "empty"),
        (lambda: quantize(torch.tensor([1.0, float("nan")]), QuantConfig(4)), "inf or nan"),
        (lambda: quantize(torch.randn(8), {"bits": 4}), "QuantConfig"),
        (lambda: quantize(torch.randn(8), QuantConfig(2), code=torch.linspace(-1, 1, 5)), "2..4 values"),
        (lambda: quantize(torch.randn(8), QuantConfig(4), backend="cuda"), "backend='cuda'"),
        (lambda: matmul(torch.randn(2, 5), quantize(torch.randn(3, 4), QuantConfig(4))), "5 features"),
        (lambda: QuantConfig(4, "nf", 100), "blocksize=100"),
        (lambda: QuantConfig(9), "bits=9"),
        (lambda: QuantConfig(4, "float"), "dtype='float'"),
        (lambda: QuantConfig(4, "nf", exponent_bits=2), "only meaningful for dtype='fp'"),
    ],
)
def test_bad_input_raises_clear_error(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()

"""Codebooks: shapes, normalization, and equality with bitsandbytes' definitions."""

import bitsandbytes.functional as bnbf
import pytest
import torch

from kbit.kernels import codebook
from kbit.kernels.codebooks import nf_offset
from kbit.kernels.config import default_exponent_bits

NF4_TABLE = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
]  # fmt: skip


def test_nf4_is_bitsandbytes_table_exactly():
    assert torch.equal(codebook("nf", 4), torch.tensor(NF4_TABLE, dtype=torch.float32))
    assert torch.equal(codebook("nf", 4), bnbf.get_4bit_type("nf4", device="cpu"))


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("dtype", ["int", "fp", "nf", "dynamic"])
def test_fixed_codebooks_are_ascending_normalized_and_fit_k_bits(dtype, bits):
    code = codebook(dtype, bits)
    assert code.dtype == torch.float32
    assert 2 <= code.numel() <= 2**bits
    assert bool((code[1:] > code[:-1]).all())
    assert code.abs().max().item() == 1.0
    assert bool((code == 0).any())


@pytest.mark.parametrize("bits", range(2, 9))
def test_int_matches_bitsandbytes_linear_map(bits):
    code = codebook("int", bits)
    assert code.numel() == 2**bits - 1
    bnb = bnbf.create_linear_map(signed=True, total_bits=bits).unique()
    # bnb's float32 linspace yields a spurious -3e-8 next to its zero padding: compare nonzero levels
    bnb = bnb[bnb.abs() > 1e-6]
    torch.testing.assert_close(code[code != 0], bnb, rtol=0, atol=1e-7)


@pytest.mark.parametrize("bits", range(2, 9))
def test_fp_matches_bitsandbytes_fp8_map(bits):
    e = default_exponent_bits(bits)
    bnb = bnbf.create_fp8_map(True, e, bits - 1 - e, bits).unique()
    assert torch.equal(codebook("fp", bits), bnb)


def test_fp_exponent_bits_choice_changes_the_grid():
    e2m1 = codebook("fp", 4, exponent_bits=2)
    assert torch.equal(e2m1, bnbf.create_fp8_map(True, 2, 1, 4).unique())
    assert not torch.equal(e2m1, codebook("fp", 4))
    assert torch.equal(codebook("fp", 3), torch.tensor([-1, -0.5, -0.25, 0, 0.25, 0.5, 1.0]))


@pytest.mark.parametrize("bits", range(2, 9))
def test_dynamic_matches_bitsandbytes_dynamic_map(bits):
    assert torch.equal(codebook("dynamic", bits), bnbf.create_dynamic_map(True, bits - 1, bits).unique())


@pytest.mark.parametrize("bits", range(2, 9))
def test_nf_generalization_is_asymmetric_normal_quantiles(bits):
    code = codebook("nf", bits)
    assert code.numel() == 2**bits
    assert int((code > 0).sum()) == 2 ** (bits - 1) and int((code < 0).sum()) == 2 ** (bits - 1) - 1
    assert abs(nf_offset(4) - 0.9677083) < 1e-7


def test_quantile_codebook_follows_the_data():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(50_000, generator=g).clamp(-4, 4) / 4
    code = codebook("quantile", 4, data=data)
    assert code.numel() == 16 and bool((code == 0).any()) and code.abs().max() == 1
    # equal-mass bins: undo the normalization (the outer bin's midpoint had magnitude `top`), then
    # each of the 15 quantile values sits inside its own 1/15 of the data (the middle, for inner bins)
    q = torch.quantile(data, torch.tensor([0.0, 1 / 15, 14 / 15, 1.0]))
    top = max(abs(q[0] + q[1]) / 2, abs(q[2] + q[3]) / 2)
    nonzero = code[code != 0] * top
    cdf = torch.tensor([(data < v).float().mean() for v in nonzero])
    edges = torch.arange(16) / 15
    assert bool(((cdf > edges[:-1]) & (cdf < edges[1:])).all())
    torch.testing.assert_close(cdf[1:-1], (edges[1:-2] + edges[2:-1]) / 2, atol=0.01, rtol=0)


@pytest.mark.parametrize(
    "args, message",
    [
        (("float", 4), "dtype='float'"),
        (("nf", 9), "bits=9"),
        (("nf", 1), "bits=1"),
        (("quantile", 4), "data="),
    ],
)
def test_bad_codebook_requests_name_the_problem(args, message):
    with pytest.raises(ValueError, match=message):
        codebook(*args)


def test_exponent_bits_only_for_fp():
    with pytest.raises(ValueError, match="only meaningful for dtype='fp'"):
        codebook("nf", 4, exponent_bits=2)
    with pytest.raises(ValueError, match="exponent_bits=4 does not fit 4 bits"):
        codebook("fp", 4, exponent_bits=4)

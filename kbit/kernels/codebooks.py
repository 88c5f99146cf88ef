"""Codebooks: the value sets each data type quantizes to, normalized to max |v| == 1.

Every codebook is a float32 tensor of ascending values (at most 2**bits of them; a type may have
fewer, e.g. `int` and `fp` have 2**bits - 1 because +0 and -0 coincide). Definitions follow the
paper and bitsandbytes (see docs/kernels.md); the generalizations to other k are documented there.
"""

from __future__ import annotations

import itertools
import math

import torch

from kbit.kernels.config import DTYPES, default_exponent_bits

FIXED_DTYPES = ("int", "fp", "nf", "dynamic")
_QUANTILE_SAMPLE = 1 << 22  # quantiles of a larger tensor are estimated on a strided sample


def _check_bits(dtype: str, bits: int) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"codebook dtype={dtype!r} is not allowed; use one of {', '.join(DTYPES)}")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ValueError(f"codebook bits={bits!r} is not allowed; use an integer from 2 to 8")


def _finish(values) -> torch.Tensor:
    """Distinct values, ascending, float32, divided by the largest magnitude (in float32, as bnb does)."""
    code = torch.tensor(sorted(set(float(v) for v in values)), dtype=torch.float32)
    return code / code.abs().max()


def int_codebook(bits: int) -> torch.Tensor:
    """Symmetric linear: 2**k - 1 levels including 0 (bitsandbytes create_linear_map(True, k)).

    Built as i / h for i in -h..h (h = 2**(k-1) - 1): float32 linspace would put -3e-8 where 0 belongs.
    """
    h = 2 ** (bits - 1) - 1
    return (torch.arange(-h, h + 1, dtype=torch.float64) / h).to(torch.float32)


def fp_codebook(bits: int, exponent_bits: int | None = None) -> torch.Tensor:
    """Sign + E exponent + M = k-1-E mantissa bits with subnormals and bias 2**(E-1).

    Same construction as bitsandbytes create_fp8_map(True, E, M, k): the exponent field value e
    scales a normal number by 2**-(e - bias - 1) and a subnormal (e == 0) by 2**-bias.
    """
    e_bits = default_exponent_bits(bits) if exponent_bits is None else exponent_bits
    m_bits = bits - 1 - e_bits
    if e_bits < 1 or m_bits < 0:
        raise ValueError(f"fp codebook: exponent_bits={exponent_bits!r} does not fit {bits} bits; use 1..{bits - 1}")
    bias = 2 ** (e_bits - 1)
    values = []
    for e in range(2**e_bits):
        for pattern in itertools.product((0, 1), repeat=m_bits):
            v = (1.0 if e else 0.0) + sum(b * 2.0 ** -(i + 1) for i, b in enumerate(pattern))
            v *= 2.0**-bias if e == 0 else 2.0 ** -(e - bias - 1)
            values += [v, -v]
    return _finish(values)


def nf_offset(bits: int) -> float:
    """The outermost quantile probability of the k-bit normal float.

    bitsandbytes' NF4 uses 0.9677083 = 1 - (1/(2*15) + 1/(2*16)) / 2: the mean of the
    half-bin offsets for 2**4 - 1 and 2**4 quantiles. The same rule at k bits gives this.
    """
    n = 2**bits
    return 1.0 - 0.5 * (1.0 / (2 * (n - 1)) + 1.0 / (2 * n))


def nf_codebook(bits: int) -> torch.Tensor:
    """Normal float: 2**(k-1) positive and 2**(k-1) - 1 negative normal quantiles, plus 0.

    At k=4 this is bitsandbytes create_normal_map(0.9677083, use_extra_value=True), i.e. the NF4 table
    bit for bit: float32 probabilities, quantiles in float64, then float32, then divided by the max in float32.
    """
    offset = nf_offset(bits) if bits != 4 else 0.9677083
    half = 2 ** (bits - 1)
    ppf = torch.special.ndtri
    # float32 probabilities and float64 quantiles, exactly the arithmetic bnb's table came from
    pos = ppf(torch.linspace(offset, 0.5, half + 1)[:-1].double())
    neg = -ppf(torch.linspace(offset, 0.5, half)[:-1].double())
    values = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).to(torch.float32)
    values = values.sort().values
    return values / values.max()


def dynamic_codebook(bits: int) -> torch.Tensor:
    """Dynamic exponent (Dettmers 2016) at k bits: bitsandbytes create_dynamic_map(True, k-1, k).

    Decade i (of k-1) holds 2**i linearly spaced fraction means in [0.1, 1] times 10**(i-(k-2)),
    mirrored for the sign, plus 0 and +1 (so the table is asymmetric by one value, as in bnb).
    """
    max_exp = bits - 1
    non_sign = bits - 1
    values = [0.0, 1.0]
    for i in range(max_exp):
        items = 2 ** (i + non_sign - max_exp) + 1
        bounds = torch.linspace(0.1, 1, items, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        scale = 10 ** (-(max_exp - 1) + i)
        values += (scale * means).tolist() + (-scale * means).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)


def _sorted_sample(normalized: torch.Tensor) -> torch.Tensor:
    """The values, flattened, in fp32 and ascending; a strided sample of a large tensor (deterministic)."""
    flat = normalized.detach().reshape(-1).to(torch.float32)
    if flat.numel() == 0:
        raise ValueError("quantile codebook: the tensor is empty; quantize a tensor with at least one element")
    if flat.numel() > _QUANTILE_SAMPLE:
        flat = flat[:: math.ceil(flat.numel() / _QUANTILE_SAMPLE)]
    return flat.sort().values


def quantile_codebook(normalized: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-tensor quantile codebook: the midpoints of 2**k equal-mass bins of the values.

    `normalized` are the values that get quantized (already divided by their block's absmax, so in
    [-1, 1]). q_i = (Q(i/n) + Q((i+1)/n)) / 2 for n = 2**k, divided by the largest magnitude.
    Bin-edge midpoints rather than bin centroids or medians: those normalize badly (a heavy-tailed
    tensor's outer bin is tiny, so dividing by it blows the inner codes up; docs/kernels.md has
    the measurements). Large tensors are sampled with a fixed stride, so the result is deterministic.
    Degenerate data (fewer than two distinct midpoints) gets -1, 0 and 1 added.
    """
    _check_bits("quantile", bits)
    ordered = _sorted_sample(normalized)
    n = 2**bits
    probs = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64, device=ordered.device)
    edges = ordered[(probs * (ordered.numel() - 1)).round().long()]
    values = torch.unique((edges[:-1] + edges[1:]) / 2)  # sorted, distinct
    if values.numel() < 2:
        values = torch.unique(torch.cat([values, torch.tensor([-1.0, 0.0, 1.0], device=values.device)]))
    return values / values.abs().max()


def codebook(dtype: str, bits: int, exponent_bits: int | None = None, data: torch.Tensor | None = None) -> torch.Tensor:
    """The ascending float32 codebook of `dtype` at `bits` bits (max |v| == 1).

    `quantile` is data-dependent: pass the values to be quantized as `data` (block-normalized).
    """
    _check_bits(dtype, bits)
    if dtype == "int":
        return int_codebook(bits)
    if dtype == "fp":
        return fp_codebook(bits, exponent_bits)
    if exponent_bits is not None:
        raise ValueError(f"codebook: exponent_bits is only meaningful for dtype='fp', not {dtype!r}; leave it unset")
    if dtype == "nf":
        return nf_codebook(bits)
    if dtype == "dynamic":
        return dynamic_codebook(bits)
    if data is None:
        raise ValueError("codebook('quantile', k) is data-dependent; pass the tensor to be quantized as data=")
    return quantile_codebook(data, bits)

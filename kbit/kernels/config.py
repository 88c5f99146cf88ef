"""`QuantConfig`: the single description of one weight quantization.

Importable without torch: the sweep parser, the database and the dashboard handle configs as
plain data. `to_dict` / `from_dict` are exact inverses and `key()` is a stable hash input.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

DTYPES = ("int", "fp", "nf", "quantile", "dynamic")
BITS = (2, 3, 4, 5, 6, 7, 8, 16)
BLOCKSIZES = tuple(2**i for i in range(5, 13))  # 32 .. 4096
METHODS = ("rtn", "gptq")  # round-to-nearest; GPTQ (kbit.kernels.gptq), which needs calibration data
DEFAULT_METHOD = "rtn"
ENDS = ("embeddings", "head")  # the parts outside the transformer blocks a config may also quantize
LABELS = {"embeddings": "emb", "head": "head"}


def default_exponent_bits(bits: int) -> int:
    """Exponent bits for the `fp` type when the sweep names none: E2 for 3..6 bits, E3 for 7..8.

    Chosen by measurement (`python -m benchmarks.codebooks`, table in docs/kernels.md): the E with
    the lowest relative MSE of block-64 quantization of Gaussian weights, ties to fewer exponent
    bits. Blockwise absmax scaling leaves little dynamic range to cover, so mantissa bits pay more
    than the paper's E3 below 7 bits (4-bit E2M1, bitsandbytes' FP4: 0.0135; E3M0: 0.0354).
    At 2 bits a sign plus one exponent bit (E=1, M=0) is the only float layout with an exponent.
    """
    if bits >= 7:
        return 3
    if bits >= 3:
        return 2
    return 1


@dataclass(frozen=True)
class QuantConfig:
    """One quantization: k bits, a data type, a block size, outlier handling and a rounding method.

    bits: 2..8, or 16 for the unquantized baseline (dtype/blocksize are then ignored and
      normalized to dtype="none", blocksize=None).
    dtype: int | fp | nf | quantile | dynamic.
    blocksize: a power of two 32..4096, or None for one scale per tensor.
    exponent_bits: for fp only; None means `default_exponent_bits(bits)` (E2 for 3..6 bits, E3 for 7..8).
    outlier_fraction: proxy-quantization share of input dimensions kept in 16 bit
      (0 = off; the paper's default is 0.02).
    method: how weights are rounded to the codebook: "rtn" (round to nearest, the paper's) or
      "gptq" (GPTQ with error feedback from calibration inputs, kbit.kernels.gptq). Both store
      the same k-bit format; the baseline normalizes it to "rtn".
    embeddings, head: also quantize the token embedding table and the output head (rtn only; a
      tied pair is one tensor, so both or neither). Off by default: the paper keeps them 16-bit.
    """

    bits: int
    dtype: str = "int"
    blocksize: int | None = 64
    exponent_bits: int | None = None
    outlier_fraction: float = 0.0
    method: str = DEFAULT_METHOD
    embeddings: bool = False
    head: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or self.bits not in BITS:
            raise ValueError(f"QuantConfig.bits={self.bits!r} is not allowed; use one of 2..8 or 16 (baseline)")
        if self.bits == 16:
            # The baseline has no data type or blocks: normalize so equal baselines compare equal.
            object.__setattr__(self, "dtype", "none")
            object.__setattr__(self, "blocksize", None)
            object.__setattr__(self, "exponent_bits", None)
            object.__setattr__(self, "outlier_fraction", 0.0)
            object.__setattr__(self, "method", DEFAULT_METHOD)
            object.__setattr__(self, "embeddings", False)
            object.__setattr__(self, "head", False)
            return
        if self.method not in METHODS:
            raise ValueError(f"QuantConfig.method={self.method!r} is not allowed; use one of {', '.join(METHODS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"QuantConfig.dtype={self.dtype!r} is not allowed; use one of {', '.join(DTYPES)}")
        if self.blocksize is not None and (
            not isinstance(self.blocksize, int) or isinstance(self.blocksize, bool) or self.blocksize not in BLOCKSIZES
        ):
            raise ValueError(
                f"QuantConfig.blocksize={self.blocksize!r} is not allowed; use a power of two from 32 to 4096, "
                "or None (null in a sweep file) for one scale per tensor"
            )
        if self.dtype == "fp":
            e = self.exponent_bits
            if e is None:
                object.__setattr__(self, "exponent_bits", default_exponent_bits(self.bits))
            elif not isinstance(e, int) or isinstance(e, bool) or not 1 <= e <= self.bits - 1:
                raise ValueError(
                    f"QuantConfig.exponent_bits={e!r} is not allowed for {self.bits}-bit fp; "
                    f"use 1..{self.bits - 1} (sign + E exponent + M mantissa bits = {self.bits})"
                )
        elif self.exponent_bits is not None:
            raise ValueError(
                f"QuantConfig.exponent_bits={self.exponent_bits!r} is only meaningful for dtype='fp', not {self.dtype!r}; "
                "leave it unset"
            )
        f = self.outlier_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= float(f) < 0.5:
            raise ValueError(f"QuantConfig.outlier_fraction={f!r} is not allowed; use a fraction in [0, 0.5), e.g. 0.02")
        object.__setattr__(self, "outlier_fraction", float(f))
        for name in ENDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"QuantConfig.{name}={value!r} is not allowed; use true or false")
            if value and self.method != DEFAULT_METHOD:
                raise ValueError(f"QuantConfig.{name}=True is not allowed with method={self.method!r}: GPTQ "
                                 "calibrates the transformer blocks only; quantize the embeddings and head with rtn, "
                                 "or leave them 16-bit")

    @property
    def quantizes_ends(self) -> tuple[str, ...]:
        """Which of the model's ends (embeddings, head) this config quantizes beside its blocks."""
        return tuple(name for name in ENDS if getattr(self, name))

    @property
    def is_baseline(self) -> bool:
        return self.bits == 16

    def to_dict(self) -> dict:
        """The fields as plain data; `method` only when it is not round-to-nearest, so a config from
        before GPTQ keeps the dict (stored runs, sweep specs) and the cache key it had."""
        data = asdict(self)
        if self.method == DEFAULT_METHOD:
            del data["method"]
        for name in ENDS:  # likewise: a config that quantizes no end keeps its dict and key
            if not data[name]:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "QuantConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"QuantConfig got unknown field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**data)

    def key(self) -> str:
        """A stable string for cache keys: canonical JSON of the normalized fields (`to_dict`): a field
        at its default (method rtn, embeddings and head off) is left out, so old keys stay."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()[:16]

    def label(self) -> str:
        """Short human label, e.g. 'nf4-b64', 'fp4e2-b64', 'int3-bT-o2%', 'nf3-b64-gptq',
        'nf4-b64-emb-head' (embeddings and head quantized too), '16bit'."""
        if self.is_baseline:
            return "16bit"
        dt = f"fp{self.bits}e{self.exponent_bits}" if self.dtype == "fp" else f"{self.dtype}{self.bits}"
        block = f"b{self.blocksize}" if self.blocksize else "bT"
        out = f"-o{self.outlier_fraction * 100:g}%" if self.outlier_fraction else ""
        method = "" if self.method == DEFAULT_METHOD else f"-{self.method}"
        ends = "".join(f"-{LABELS[name]}" for name in self.quantizes_ends)
        return f"{dt}-{block}{out}{method}{ends}"

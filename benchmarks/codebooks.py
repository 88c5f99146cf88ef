"""Relative MSE of every codebook under blockwise quantization, and the fp exponent split it picks.

    python -m benchmarks.codebooks [--bits 3,4,5,6,7,8] [--blocksize 64] [--numel 1048576] [--seed 0]

For each k it prints the relative MSE, sum (w - w_hat)^2 / sum w^2, of blockwise quantization (torch
reference) of Gaussian weights, for `fp` with every exponent-bit count E = 1..k-1 and for int, nf,
quantile and dynamic for reference; then the same for one real weight matrix of the bundled demo
family (the largest Linear weight of the largest member built under $KBIT_HOME/models; skipped with
a note when none is built: this script never builds one). The default of
`QuantConfig.exponent_bits` (`kbit.kernels.config.default_exponent_bits`) is the E with the lowest
Gaussian MSE at block 64, ties to fewer exponent bits; the last lines say whether it still is.
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.timing import timed
from kbit.kernels.blockwise import dequantize, quantize
from kbit.kernels.config import QuantConfig, default_exponent_bits

OTHER_DTYPES = ("int", "nf", "quantile", "dynamic")
DEMO_FAMILY = "demo"


def relative_mse(w: torch.Tensor, cfg: QuantConfig) -> float:
    w_hat = dequantize(quantize(w, cfg, backend="torch"), backend="torch")
    return float((w - w_hat).pow(2).sum() / w.pow(2).sum())


def gaussian(numel: int, seed: int) -> torch.Tensor:
    return torch.randn(numel, generator=torch.Generator().manual_seed(seed))


def row_names(bits: list[int]) -> list[str]:
    return [f"fp E{e}" for e in range(1, max(bits))] + list(OTHER_DTYPES)


def config_of(name: str, k: int, blocksize: int | None) -> QuantConfig | None:
    """The config a table row names at k bits, or None where that fp split does not fit k."""
    if name.startswith("fp E"):
        e = int(name[4:])
        return QuantConfig(k, "fp", blocksize, exponent_bits=e) if e <= k - 1 else None
    return QuantConfig(k, name, blocksize)


def measure(w: torch.Tensor, bits: list[int], blocksize: int | None) -> dict[tuple[str, int], float]:
    """{(row name, k): relative MSE} for every row that fits k."""
    out = {}
    for k in bits:
        for name in row_names(bits):
            cfg = config_of(name, k, blocksize)
            if cfg is not None:
                out[name, k] = relative_mse(w, cfg)
    return out


def best_exponent(mse: dict[tuple[str, int], float], k: int) -> int:
    """The fp exponent-bit count with the lowest MSE at k bits; ties go to fewer exponent bits."""
    return min(range(1, k), key=lambda e: (mse[f"fp E{e}", k], e))


def table(mse: dict[tuple[str, int], float], bits: list[int], title: str) -> str:
    head = f"{title}\n\n| codebook | " + " | ".join(f"k={k}" for k in bits) + " |\n"
    head += "|---" * (len(bits) + 1) + "|\n"
    body = ""
    for name in row_names(bits):
        cells = [f"{mse[name, k]:.3e}" if (name, k) in mse else "-" for k in bits]
        body += f"| {name} | " + " | ".join(cells) + " |\n"
    best = [f"E{best_exponent(mse, k)}" for k in bits]
    return head + body + "| best fp E | " + " | ".join(best) + " |\n"


def demo_weight() -> tuple[str, torch.Tensor] | None:
    """(description, weight) of the largest decoder Linear weight of the largest built demo member."""
    from safetensors.torch import load_file

    from kbit.family.members import build_info, family_members, model_dir

    built = [m for m in family_members(DEMO_FAMILY) if build_info(m) is not None]
    if not built:
        return None
    model = built[-1]
    tensors = load_file(str(model_dir(model) / "model.safetensors"))
    name = max((n for n, t in tensors.items() if t.dim() == 2 and "layers." in n),
               key=lambda n: (tensors[n].numel(), n))
    w = tensors[name].float()
    return f"{model} {name} {tuple(w.shape)}", w


def defaults_line(mse: dict[tuple[str, int], float], bits: list[int]) -> str:
    chosen = {k: default_exponent_bits(k) for k in bits}
    best = {k: best_exponent(mse, k) for k in bits}
    status = "matches" if chosen == best else "DIFFERS from"
    text = ", ".join(f"k={k}: E{chosen[k]}" for k in bits)
    return f"default_exponent_bits ({text}) {status} the lowest Gaussian MSE"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", default="3,4,5,6,7,8", help="comma-separated k values (3..8)")
    p.add_argument("--blocksize", type=int, default=64, help="block size (32..4096), 0 for one scale per tensor")
    p.add_argument("--numel", type=int, default=1 << 20, help="Gaussian weights drawn")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    bits = [int(v) for v in args.bits.split(",") if v]
    blocksize = args.blocksize or None
    try:
        for k in bits:
            QuantConfig(k, "int", blocksize)
    except ValueError as exc:
        raise SystemExit(f"benchmarks.codebooks: {exc}") from None
    seconds, mse = timed(lambda: measure(gaussian(args.numel, args.seed), bits, blocksize), repeat=1)
    print(table(mse, bits, f"Gaussian weights ({args.numel} values, seed {args.seed}), block {blocksize}: relative MSE"))
    real = demo_weight()
    if real is None:
        print(f"Real weights: skipped, no {DEMO_FAMILY!r} model is built under $KBIT_HOME/models "
              "(`kbit demo` builds one).\n")
    else:
        print(table(measure(real[1], bits, blocksize), bits, f"Real weights: {real[0]}, block {blocksize}: relative MSE"))
    print(defaults_line(mse, bits) + f" (Gaussian column measured in {seconds:.1f} s)", file=sys.stdout)


if __name__ == "__main__":
    main()

"""Benchmark of the fused k-bit dequantize-matmul against fp16 `torch.matmul`, side by side.

    python -m benchmarks.kernels [--bits 2,3,4,5,6,7,8] [--shapes 8192x8192,4096x4096]
                                 [--batches 1,16] [--dtype nf] [--blocksize 64] [--backend auto]
                                 [--peak-gbps N] [--out FILE]

For each weight shape (N out x K in), batch M and k it prints the median time of the quantized
matmul and of fp16 torch.matmul on the same shape, the bytes each must move (packed codes + 16-bit
scales + activations; fp16 weights + activations), the achieved bandwidth, the speedup, and each
one's share of its bandwidth ideal: the time its bytes take at the peak bandwidth (a measured
device-to-device copy unless --peak-gbps is given) over its measured time. On a GPU it runs the
Triton kernels (triton.testing.do_bench: L2 flushed before each run); on CPU the torch reference,
with small default shapes so it finishes in a minute or two. --out rewrites FILE with the table
after every row, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from kbit.kernels import backend as backends
from kbit.kernels.blockwise import matmul, quantize
from kbit.kernels.config import QuantConfig

GPU_SHAPES = "4096x4096,8192x8192"
CPU_SHAPES = "1024x1024,2048x2048"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _shapes(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(d) for d in s.lower().split("x")) for s in text.split(",") if s]  # type: ignore[misc]
    except ValueError:
        raise SystemExit(f"--shapes {text!r}: use comma-separated NxK pairs, e.g. 4096x4096,8192x8192") from None


def time_call(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of fn()."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=max(100, repeats * 10), return_mode="median") / 1e3
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quantized_bytes(m: int, n: int, k: int, cfg: QuantConfig) -> int:
    blocks = -(-n * k // cfg.blocksize) if cfg.blocksize else 1
    return n * k * cfg.bits // 8 + 2 * blocks + 2 * m * k + 2 * m * n


def fp16_bytes(m: int, n: int, k: int) -> int:
    return 2 * n * k + 2 * m * k + 2 * m * n


def copy_gbps(device: torch.device, repeats: int) -> float:
    """Achievable memory bandwidth: bytes read + written per second by a device-to-device copy."""
    n = (1 << 29) if device.type == "cuda" else (1 << 24)  # 1 GiB on a GPU (far beyond L2), 32 MiB on CPU
    src = torch.empty(n, dtype=torch.float16, device=device).normal_()
    dst = torch.empty_like(src)
    seconds = time_call(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() * src.element_size() / seconds / 1e9


def _row(n, k, m, b, cfg, impl, t_q, t_fp16, peak_gbps) -> dict:
    q_bytes, f_bytes = quantized_bytes(m, n, k, cfg), fp16_bytes(m, n, k)
    return dict(
        n=n, k=k, m=m, bits=b, config=cfg.label(), backend=impl,
        kernel="GEMV" if m == 1 else "GEMM",
        t_us=t_q * 1e6, t_fp16_us=t_fp16 * 1e6,
        gbps=q_bytes / t_q / 1e9, gbps_fp16=f_bytes / t_fp16 / 1e9,
        speedup=t_fp16 / t_q, ideal_speedup=f_bytes / q_bytes,
        pct_ideal=100 * q_bytes / peak_gbps / 1e9 / t_q, pct_ideal_fp16=100 * f_bytes / peak_gbps / 1e9 / t_fp16,
    )  # fmt: skip


def run(bits, shapes, batches, dtype, blocksize, backend, device, repeats, peak_gbps, on_row=None) -> list[dict]:
    """One row per (shape, batch, k); `on_row(rows)` is called after each (to save partial results)."""
    impl = backends.resolve(backend, device)
    rows = []
    work = [(s, m) for s in shapes for m in batches]
    for (n, k), m in tqdm(work, desc="shapes", unit="shape", file=sys.stderr):
        w = torch.randn(n, k, device=device, dtype=torch.float16)
        x = torch.randn(m, k, device=device, dtype=torch.float16)
        t_fp16 = time_call(lambda: torch.matmul(x, w.T), device, repeats)
        for b in bits:
            cfg = QuantConfig(b, dtype, blocksize)
            qt = quantize(w, cfg, backend=backend)
            t_q = time_call(lambda: matmul(x, qt, backend=backend), device, repeats)
            rows.append(_row(n, k, m, b, cfg, impl, t_q, t_fp16, peak_gbps))
            if on_row is not None:
                on_row(rows)
    return rows


def table(rows: list[dict], device_name: str, peak_gbps: float) -> str:
    head = (
        f"device: {device_name}; torch {torch.__version__}; peak (copy) bandwidth {peak_gbps:.4g} GB/s\n\n"
        "| N x K | M | kernel | config | backend | time (us) | GB/s | % of ideal | fp16 matmul (us) | fp16 GB/s "
        "| fp16 % of ideal | speedup | ideal speedup |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['n']}x{r['k']} | {r['m']} | {r['kernel']} | {r['config']} | {r['backend']} | {r['t_us']:.1f} | "
        f"{r['gbps']:.3g} | {r['pct_ideal']:.3g}% | {r['t_fp16_us']:.1f} | {r['gbps_fp16']:.3g} | "
        f"{r['pct_ideal_fp16']:.3g}% | {r['speedup']:.2f}x | {r['ideal_speedup']:.2f}x |\n"
        for r in rows
    )
    return head + body


def main(argv: list[str] | None = None) -> None:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", default="2,3,4,5,6,7,8", help="comma-separated k values (2..8)")
    p.add_argument("--shapes", default=GPU_SHAPES if cuda else CPU_SHAPES, help="comma-separated NxK weight shapes")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes M (1 = GEMV)")
    p.add_argument("--dtype", default="nf", help="data type: int, fp, nf, quantile, dynamic")
    p.add_argument("--blocksize", type=int, default=64, help="block size (32..4096), 0 for one scale per tensor")
    p.add_argument("--backend", default="auto", choices=backends.BACKENDS)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement on CPU")
    p.add_argument("--peak-gbps", type=float, default=0.0, help="peak bandwidth for '%% of ideal' (0: measure a copy)")
    p.add_argument("--out", default="", help="also write the table to this file, rewritten after every row")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    try:
        bits = _ints(args.bits)
        for b in bits:
            QuantConfig(b, args.dtype, args.blocksize or None)
        batches = _ints(args.batches)
        backends.resolve(args.backend, device)
    except ValueError as exc:
        raise SystemExit(f"benchmarks.kernels: {exc}") from None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_gbps or copy_gbps(device, args.repeats)
    save = (lambda rows: Path(args.out).write_text(table(rows, name, peak))) if args.out else None
    rows = run(bits, _shapes(args.shapes), batches, args.dtype, args.blocksize or None, args.backend, device,
               args.repeats, peak, on_row=save)
    print(table(rows, name, peak))


if __name__ == "__main__":
    main()

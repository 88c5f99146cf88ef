"""The analysis of a large sweep: time and peak memory of `kbit.analysis.findings` (everything the
report and the Frontier page compute) on a synthetic family of 11 sizes x 1,100 configs = 12,100
runs plus their 16-bit baselines, every run with per-document scores on two accuracy tasks.

    python -m benchmarks.analysis_scale [--sizes 11] [--docs 200] [--n-boot 4000] [--small]

Each measurement runs in a fresh process so its peak resident memory (ru_maxrss) is its own. The
goal (issue 22): under 10 s and 1 GB on the 2-core development machine. Output: benchmarks/analysis_scale.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time

import numpy as np

BITS = (3, 4, 5, 6, 8)
DTYPES = ("int", "fp", "nf", "quantile", "dynamic")
BLOCKS = tuple(2**i for i in range(4, 15))  # 16 .. 16384: 11 block sizes
OUTLIERS = (0.0, 0.01, 0.02, 0.05)
TASKS = ("task_a", "task_b")


def configs(small: bool) -> list[tuple]:
    blocks = BLOCKS[:2] if small else BLOCKS
    return list(itertools.product(BITS, DTYPES, blocks, OUTLIERS))


def family(n_sizes: int, n_docs: int, small: bool, seed: int = 0):
    """(rows as kbit.db.queries.frontier_rows gives them, per-document scores as document_scores does)."""
    rng = np.random.default_rng(seed)
    rows, scores = [], {}
    difficulty = {t: rng.normal(0, 1.5, n_docs) for t in TASKS}
    for size in range(n_sizes):
        n_params = 1e6 * 2 ** size
        for bits, dtype, block, outlier in [(16, "none", None, 0.0), *configs(small)]:
            bpp = 16.0 if bits == 16 else bits + 16 / block + outlier * 16
            skill = 0.3 * size - 0.5 * max(0, 5 - bits) + {"nf": 0.1, "quantile": 0.05}.get(dtype, 0.0)
            run_id = len(rows) + 1
            scores[run_id] = {}
            values = []
            for task in TASKS:
                p = 1 / (1 + np.exp(difficulty[task] - skill))
                outcome = (rng.random(n_docs) < p).astype(float)
                scores[run_id][task] = {"doc_ids": np.arange(n_docs), "values": outcome, "weights": None}
                values.append(outcome.mean())
            label = "16bit" if bits == 16 else f"{dtype}{bits}-b{block}" + (f"-o{outlier * 100:g}%" if outlier else "")
            rows.append({
                "run_id": run_id, "sweep_id": 1, "sweep": "big", "team": "t", "model": f"big/s{size}",
                "family": "big", "n_params": n_params, "n_quantized": n_params * 0.9, "bits": bits,
                "dtype": dtype, "blocksize": block, "exponent_bits": None, "outlier_fraction": outlier,
                "method": "rtn", "label": label, "bits_per_param": bpp,
                "total_bits": n_params * (0.9 * bpp + 0.1 * 16), "value": float(np.mean(values)), "stderr": 0.01,
            })
    return rows, scores


def measure(n_sizes: int, n_docs: int, n_boot: int, small: bool) -> dict:
    """In this process: build the family, then time findings() and the report's rendering."""
    from kbit.analysis import findings, rows_to_frame
    from kbit.cli.report import render_report

    rows, scores = family(n_sizes, n_docs, small)
    frame = rows_to_frame(rows)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    found = findings(frame, "mean_zero_shot/acc", scores, n_boot=n_boot)
    analysed = time.perf_counter() - start
    start = time.perf_counter()
    text = render_report([("mean_zero_shot/acc", found)])
    rendered = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"runs": len(rows), "configs": len(rows) - n_sizes, "sizes": n_sizes, "docs": n_docs * len(TASKS),
            "n_boot": n_boot, "analysis_s": round(analysed, 2), "render_s": round(rendered, 3),
            "peak_mb": round(peak), "data_mb": round(before), "report_lines": text.count("\n"),
            "verdicts": found.verdicts}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, default=11)
    parser.add_argument("--docs", type=int, default=200, help="documents per task (two tasks)")
    parser.add_argument("--n-boot", type=int, default=4000)
    parser.add_argument("--small", action="store_true", help="2 block sizes instead of 11 (a quick check)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.sizes, args.docs, args.n_boot, args.small)))
        return
    command = [sys.executable, "-m", "benchmarks.analysis_scale", "--child", "--sizes", str(args.sizes),
               "--docs", str(args.docs), "--n-boot", str(args.n_boot)] + (["--small"] if args.small else [])
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print("| runs | configs | sizes | documents per run | replicates | findings() | report rendering | peak memory (data alone) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {result['runs']:,} | {result['configs']:,} | {result['sizes']} | {result['docs']} | {result['n_boot']} | "
          f"{result['analysis_s']} s | {result['render_s']} s | {result['peak_mb']} MB ({result['data_mb']} MB) |")
    print(f"\nverdicts: {', '.join(result['verdicts'])}")


if __name__ == "__main__":
    main()

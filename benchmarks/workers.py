"""Figures for the bundled family: build time, size and 16-bit scores of every member, and the
evaluation time per config (baseline and a few quantized configs), as a markdown table.

    python -m benchmarks.workers [--family demo] [--limit N] [--configs 16,nf4-b64,int3-b64]

Builds the family first if it is not built under $KBIT_HOME (the build time is then printed too).
"""

from __future__ import annotations

import argparse
import time

from kbit.family import members
from kbit.kernels import QuantConfig
from kbit.sweeps import EvalSpec, ModelSpec
from kbit.workers import evaluate_configs

PARSE = {"16": QuantConfig(16)}


def parse_config(text: str) -> QuantConfig:
    """'16' | '<dtype><bits>-b<blocksize>', e.g. nf4-b64, int3-b128."""
    if text in PARSE:
        return PARSE[text]
    head, _, block = text.partition("-b")
    dtype = head.rstrip("0123456789")
    return QuantConfig(int(head[len(dtype):]), dtype, int(block) if block else None)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="demo")
    ap.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--configs", default="16,nf4-b64,int3-b64")
    args = ap.parse_args(argv)
    configs = [parse_config(c) for c in args.configs.split(",")]
    spec = EvalSpec(limit=args.limit, batch_size=args.batch_size)

    started = time.perf_counter()
    members.ensure_family(args.family)
    print(f"family {args.family} ready in {time.perf_counter() - started:.1f} s (0 if it was already built)\n")
    print("| model | params | train tokens | train time (s) | config | held-out bpb | lastword acc | choice acc | choice acc_norm | eval time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for member in members.family_members(args.family):
        train = members.build_info(member)["train"]
        for r in evaluate_configs(ModelSpec(member), configs, spec):
            if r.status != "done":
                print(f"| {member} | {r.config} failed: {r.error} |")
                continue
            label = QuantConfig.from_dict(r.config).label()
            print(
                f"| {member} | {train['n_params']:,} | {train['tokens']:,} | {train['seconds']:.0f} | {label} "
                f"| {r.metric('kbit_heldout', 'bits_per_byte'):.4f} | {r.metric('kbit_lastword', 'acc'):.3f} "
                f"| {r.metric('kbit_choice', 'acc'):.3f} | {r.metric('kbit_choice', 'acc_norm'):.3f} | {r.wall_time_s:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

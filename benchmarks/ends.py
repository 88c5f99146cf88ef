"""Quantizing the embeddings and head too (`quantize: {embeddings: true, head: true}`): total bits,
the share of them kept at 16 bits, and held-out loss, with and without the option.

    python -m benchmarks.ends                          # the demo family, int3-b64 and nf4-b64
    python -m benchmarks.ends --family micro --configs nf4-b64

For each member of a bundled family (the shipped weights) and each config it prints the run's
total bits as `BitReport` charges them (what a run stores), the 16-bit share of those bits
((n_params - n_quantized) * 16 / total), and the held-out loss (mean next-token cross-entropy,
nats, on the `kbit_heldout` chapters; benchmarks.gptq's windows) of the 16-bit model, the config,
and the config with the ends quantized. Output lives in benchmarks/ends.md.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from benchmarks.gptq import heldout_loss, heldout_windows
from kbit.family import members
from kbit.kernels import QuantConfig, quantize_model_, restore_model_
from kbit.sweeps import ModelSpec
from kbit.workers.calibration import model_context
from kbit.workers.loading import load_model

CONFIGS = {"int3-b64": QuantConfig(3, "int", 64), "nf4-b64": QuantConfig(4, "nf", 64)}
ENDS = {"embeddings": True, "head": True}


def rows_for(model_id: str, configs: list[str]) -> list[dict]:
    loaded = load_model(ModelSpec(model_id))
    windows = heldout_windows(loaded.tokenizer, min(512, model_context(loaded.model)))
    base = quantize_model_(loaded.model, QuantConfig(16))
    base_loss = heldout_loss(loaded.model, windows)
    rows = []
    for name in configs:
        cfg = CONFIGS[name]
        out = {"model": model_id, "config": name, "n_params": base.n_params, "loss16": base_loss}
        for key, config in (("plain", cfg), ("ends", replace(cfg, **ENDS))):
            report = quantize_model_(loaded.model, config)
            out[key] = {"total_bits": report.total_bits, "share16": (report.n_params - report.n_quantized) * 16 / report.total_bits,
                        "loss": heldout_loss(loaded.model, windows)}
            restore_model_(loaded.model)
        rows.append(out)
    return rows


def line(row: dict) -> str:
    plain, ends = row["plain"], row["ends"]
    return (f"| {row['model']} | {row['n_params']:,} | {row['config']} | {plain['total_bits'] / 1e6:.3f} | "
            f"{ends['total_bits'] / 1e6:.3f} | {plain['total_bits'] / ends['total_bits']:.2f}x | "
            f"{plain['share16']:.1%} | {ends['share16']:.1%} | {row['loss16']:.4f} | {plain['loss']:.4f} | {ends['loss']:.4f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="demo")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    args = parser.parse_args(argv)
    configs = args.configs.split(",")
    print("| model | params | config | Mbit | Mbit, ends quantized | ratio | 16-bit share | 16-bit share, ends "
          "| loss 16-bit | loss | loss, ends |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model_id in members.family_members(args.family):
        for row in rows_for(model_id, configs):
            print(line(row), flush=True)


if __name__ == "__main__":
    main()

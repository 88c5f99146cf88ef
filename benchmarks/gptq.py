"""GPTQ against round-to-nearest: held-out loss (mean next-token cross-entropy, nats) at 3 and 4
bits per data type, and GPTQ's quantization time per million quantized parameters.

    python -m benchmarks.gptq                         # the micro family (seconds)
    python -m benchmarks.gptq --family demo --sizes s1,s2
    python -m benchmarks.gptq /models/opt-125m        # any local checkpoint (or bundled id)
    python -m benchmarks.gptq --act-order both        # GPTQ with and without act order

The held-out text is the bundled held-out chapters (the `kbit_heldout` task's documents) in
windows of the model's context (at most 512 tokens); calibration is the default `Calibration`
(128 windows of 512 tokens, capped at the context, from the bundled training text). Builds (or
reuses) bundled models under $KBIT_HOME. Output lives in benchmarks/gptq.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kbit.family import corpus, members, taskdata
from kbit.kernels import QuantConfig, gptq, quantize_model_, restore_model_
from kbit.sweeps import ModelSpec
from kbit.sweeps.evalspec import Calibration
from kbit.workers.calibration import calibration_batches, model_context, tokenize
from kbit.workers.loading import load_model

EVAL_CONTEXT = 512
EVAL_ROWS = 16  # windows per forward pass
MIN_INCREASE = 0.002  # nats: RTN loss increases below this are noise for the summary


def heldout_windows(tokenizer, context: int) -> torch.Tensor:
    """The held-out documents' tokens in non-overlapping windows of `context` tokens."""
    _, heldout = corpus.split()
    text = "\n\n".join(doc["text"] for doc in taskdata.heldout_docs(heldout))
    tokens = tokenize(text, tokenizer)
    rows = tokens.numel() // context
    return tokens[: rows * context].view(rows, context)


@torch.no_grad()
def heldout_loss(model, windows: torch.Tensor) -> float:
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in windows.split(EVAL_ROWS):
        batch = batch.to(device)
        logits = model(batch).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                 reduction="sum")
        total, count = total + float(loss), count + batch[:, 1:].numel()
    return total / count


def measure(model, cfg: QuantConfig, windows, batches) -> tuple[float, float, int]:
    """(held-out loss, quantization seconds, quantized parameters) of one config."""
    started = time.perf_counter()
    report = quantize_model_(model, cfg, calibration=batches if cfg.method == "gptq" else None)
    took = time.perf_counter() - started
    try:
        return heldout_loss(model, windows), took, report.n_quantized
    finally:
        restore_model_(model)


def rows_for(model_id: str, dtypes, bits, blocksize: int, calibration: Calibration, act_orders) -> list[dict]:
    loaded = load_model(ModelSpec(model_id))
    model = loaded.model
    context = model_context(model) or EVAL_CONTEXT
    windows = heldout_windows(loaded.tokenizer, min(context, EVAL_CONTEXT))
    batches = calibration_batches(calibration, loaded.tokenizer, context)
    base = heldout_loss(model, windows)
    rows = []
    for dtype in dtypes:
        for k in bits:
            rtn, _, n_quantized = measure(model, QuantConfig(k, dtype, blocksize), windows, batches)
            row = {"model": model_id, "dtype": dtype, "k": k, "n_quantized": n_quantized, "base": base, "rtn": rtn}
            for act_order in act_orders:
                gptq.ACT_ORDER = act_order
                loss, took, _ = measure(model, QuantConfig(k, dtype, blocksize, method="gptq"), windows, batches)
                row[f"gptq_{act_order}"], row[f"seconds_{act_order}"] = loss, took
            rows.append(row)
            print(line(row, act_orders), flush=True)
    return rows


def header(act_orders) -> list[str]:
    gptq_cols = [f"GPTQ{'' if len(act_orders) == 1 else (' act-order' if a else ' in order')}" for a in act_orders]
    head = ["model", "quantized params", "dtype", "k", "16-bit loss", "RTN loss", *gptq_cols,
            "GPTQ - RTN", "GPTQ s / M params"]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def line(row: dict, act_orders) -> str:
    """One table row; GPTQ - RTN and the time are of the first act-order setting (the default first)."""
    seconds = row[f"seconds_{act_orders[0]}"] / row["n_quantized"] * 1e6
    cells = [row["model"], f"{row['n_quantized']:,}", row["dtype"], str(row["k"]), f"{row['base']:.4f}",
             f"{row['rtn']:.4f}", *(f"{row[f'gptq_{a}']:.4f}" for a in act_orders),
             f"{row[f'gptq_{act_orders[0]}'] - row['rtn']:+.4f}", f"{seconds:.1f}"]
    return "| " + " | ".join(cells) + " |"


def summary(rows: list[dict], act_orders) -> list[str]:
    """Per k and act-order setting: GPTQ's loss increase over 16 bits as a share of RTN's (median over
    the rows where RTN costs at least MIN_INCREASE nats, so noise-level rows do not count)."""
    out = []
    for k in sorted({r["k"] for r in rows}):
        counted = [r for r in rows if r["k"] == k and r["rtn"] - r["base"] >= MIN_INCREASE]
        for act_order in act_orders:
            shares = sorted((r[f"gptq_{act_order}"] - r["base"]) / (r["rtn"] - r["base"]) for r in counted)
            if shares:
                out.append(f"- {k}-bit, act order {'on' if act_order else 'off'}: GPTQ's loss increase is "
                           f"{statistics.median(shares):.2f}x "
                           f"RTN's (median of {len(shares)} rows; range {shares[0]:.2f}-{shares[-1]:.2f})")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="local checkpoint folders or model ids (default: the --family)")
    parser.add_argument("--family", default="micro", choices=sorted(members.FAMILIES))
    parser.add_argument("--sizes", default="", help="comma-separated members of the family (default: all)")
    parser.add_argument("--dtypes", default="int,fp,nf")
    parser.add_argument("--bits", default="3,4")
    parser.add_argument("--blocksize", type=int, default=64)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--act-order", choices=("on", "off", "both"), default="on" if gptq.ACT_ORDER else "off")
    args = parser.parse_args(argv)
    models = args.models or [m for m in members.family_members(args.family)
                             if not args.sizes or m.rsplit("/", 1)[1] in args.sizes.split(",")]
    act_orders = {"on": (True,), "off": (False,), "both": (True, False)}[args.act_order]
    calibration = Calibration(samples=args.samples, seq_len=args.seq_len)
    torch.manual_seed(0)
    print(f"block {args.blocksize}; calibration {args.samples} x {args.seq_len} tokens (capped at the context) of the "
          f"bundled training text; GPTQ damping {gptq.PERCDAMP}, act order {args.act_order}; torch threads "
          f"{torch.get_num_threads()}, device {'cuda' if torch.cuda.is_available() else 'cpu'}\n")
    print("\n".join(header(act_orders)), flush=True)
    rows = []
    for model_id in models:
        rows += rows_for(model_id, args.dtypes.split(","), [int(b) for b in args.bits.split(",")], args.blocksize,
                         calibration, act_orders)
    print("\n" + "\n".join(summary(rows, act_orders)))


if __name__ == "__main__":
    main()

"""The Python half of `make gpu-check` (scripts/gpu_check.sh runs the stages; docs/kernels.md "GPU check").

    python -m benchmarks.gpu_check header                      # device, driver, torch, triton, date
    python -m benchmarks.gpu_check tests-report JUNIT.xml      # the kernel tests' outcome as markdown
    python -m benchmarks.gpu_check model [--small] [--out F]   # a quantized model on GPU vs CPU reference

`model` builds a Llama with the bundled demo family's largest geometry (or the micro family's with
--small) from a fixed seed, quantizes it with several configs, and compares the Triton kernels on the
device (CUDA, or the interpreter on CPU in a dry run) with the plain-torch reference on the CPU: the
mean next-token NLL of fixed token windows (GEMM path) and the logits of one decoding step (GEMV
path), each against a stated tolerance. It is a kernels-in-a-model check, not an lm-eval score.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from kbit.family.members import FAMILIES
from kbit.kernels import QuantConfig, quantize_model_

MODEL_CONFIGS = (
    QuantConfig(4, "nf", 64), QuantConfig(4, "fp", 64), QuantConfig(3, "int", 128), QuantConfig(3, "quantile", 64),
    QuantConfig(2, "nf", None), QuantConfig(5, "dynamic", 256), QuantConfig(8, "int", 4096, outlier_fraction=0.02),
)  # fmt: skip
SMALL_CONFIGS = (QuantConfig(4, "nf", 64), QuantConfig(3, "quantile", 32, outlier_fraction=0.02))
# fp32 on both sides: the kernels differ from the reference only in accumulation order
TOLERANCE = {"nll_abs": 1e-4, "logit_rel": 1e-3}


def _driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "n/a"
    except (OSError, subprocess.TimeoutExpired):
        return "n/a (no nvidia-smi)"


def _device_line() -> str:
    if not torch.cuda.is_available():
        return "cpu (torch sees no CUDA device: the Triton kernels ran in the interpreter)"
    p = torch.cuda.get_device_properties(0)
    return f"{p.name} ({p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, CUDA {torch.version.cuda})"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "n/a"
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"


def header() -> str:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"- device: {_device_line()}\n- driver: {_driver()}\n"
        f"- torch {torch.__version__}, triton {triton_version}, Python {platform.python_version()}\n"
        f"- date: {now}; kbit commit {_commit()}\n"
    )


def tests_report(junit: Path) -> str:
    """Counts, time and the failures of a pytest junit-xml file, as markdown."""
    if not junit.exists():
        return "No junit report was written (pytest was killed before the end): see log.txt.\n"
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    text = (
        "| tests | passed | failed | errors | skipped | time (s) |\n|---|---|---|---|---|---|\n"
        f"| {counts['tests']} | {passed} | {counts['failures']} | {counts['errors']} | {counts['skipped']} "
        f"| {float(suite.get('time', 0)):.0f} |\n"
    )
    bad = [(case, child) for case in suite.iter("testcase") for child in case if child.tag in ("failure", "error")]
    if bad:
        text += "\n| failed test | message |\n|---|---|\n"
        for case, child in bad[:40]:
            message = (child.get("message") or "").splitlines()[0][:160].replace("|", "/") if child.get("message") else ""
            text += f"| {case.get('classname')}::{case.get('name')} | {message} |\n"
        if len(bad) > 40:
            text += f"\n... and {len(bad) - 40} more (log.txt)\n"
    return text


@dataclass
class ModelRow:
    config: str
    nll_ref: float
    nll_dev: float
    logit_rel: float

    @property
    def ok(self) -> bool:
        return abs(self.nll_dev - self.nll_ref) <= TOLERANCE["nll_abs"] and self.logit_rel <= TOLERANCE["logit_rel"]


def tiny_llama(small: bool):
    """A fixed-seed Llama with a bundled family's geometry (no download, no training)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    family = FAMILIES["micro" if small else "demo"]
    g = list(family.sizes.values())[-1]
    cfg = LlamaConfig(vocab_size=family.vocab_size, hidden_size=g.hidden, intermediate_size=g.intermediate,
                      num_hidden_layers=g.layers, num_attention_heads=g.heads, num_key_value_heads=g.heads,
                      max_position_embeddings=family.context)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def _nll_and_step(model, ids: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean next-token NLL of `ids` (batched: GEMM) and the logits of one one-token step (GEMV)."""
    with torch.no_grad():
        logits = model(ids).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        step = model(ids[:1, :1]).logits.float()
    return float(nll), step.cpu()


def model_check(small: bool, device: str) -> Iterator[list[ModelRow]]:
    """The rows so far, after each config (so a run cut short keeps what it measured)."""
    base = tiny_llama(small)
    windows, length = (2, 32) if small else (4, 128)
    ids = torch.randint(0, base.config.vocab_size, (windows, length), generator=torch.Generator().manual_seed(1))
    rows = []
    for cfg in SMALL_CONFIGS if small else MODEL_CONFIGS:
        ref = copy.deepcopy(base)
        quantize_model_(ref, cfg, backend="torch")
        nll_ref, step_ref = _nll_and_step(ref, ids)
        dev = copy.deepcopy(base).to(device)
        quantize_model_(dev, cfg, backend="triton")
        nll_dev, step_dev = _nll_and_step(dev, ids.to(device))
        rel = float((step_dev - step_ref).abs().max() / step_ref.abs().max())
        rows.append(ModelRow(cfg.label(), nll_ref, nll_dev, rel))
        yield rows


def model_table(rows: list[ModelRow], small: bool, device: str) -> str:
    geometry = "micro m2" if small else "demo s4"
    text = (
        f"Llama with the bundled {geometry} geometry, random weights (seed 0), fp32; Triton on {device} vs the torch "
        f"reference on CPU. Tolerance: |NLL difference| <= {TOLERANCE['nll_abs']:g} nats and max |logit difference| <= "
        f"{TOLERANCE['logit_rel']:g} x max |logit| (one decoding step).\n\n"
        "| config | NLL reference | NLL device | difference | step logits rel. diff | within tolerance |\n"
        "|---|---|---|---|---|---|\n"
    )
    for r in rows:
        text += (f"| {r.config} | {r.nll_ref:.6f} | {r.nll_dev:.6f} | {r.nll_dev - r.nll_ref:+.2e} | {r.logit_rel:.2e} "
                 f"| {'yes' if r.ok else 'NO'} |\n")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("header")
    rep = sub.add_parser("tests-report")
    rep.add_argument("junit", type=Path)
    mod = sub.add_parser("model")
    mod.add_argument("--small", action="store_true", help="the micro geometry and two configs (dry run)")
    mod.add_argument("--out", default="", help="write the table here, rewritten after every config")
    args = p.parse_args(argv)
    if args.command == "header":
        print(header(), end="")
        return 0
    if args.command == "tests-report":
        print(tests_report(args.junit), end="")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows: list[ModelRow] = []
    for rows in model_check(args.small, device):
        if args.out:
            Path(args.out).write_text(model_table(rows, args.small, device))
    print(model_table(rows, args.small, device), end="")
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

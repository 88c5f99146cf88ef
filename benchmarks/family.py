"""The bundled family at 16 bits: per member its build time, every bundled task's accuracy with its
standard error, mean zero-shot accuracy, held-out bits per byte and the evaluation time of one
config; then each task's chance level and the goals the family is built to meet (every accuracy
rises with size and stays at least 0.10 above chance and 0.05 below 1.0; the spread of mean
zero-shot accuracy is at least 3x one config's standard error).

    python -m benchmarks.family [--family demo] [--limit N] [--batch-size 16]

Builds (or reuses) the family under $KBIT_HOME; a member built earlier shows its recorded training
time. Output lives in docs/model-family.md.
"""

from __future__ import annotations

import argparse
import time

from kbit.family import members, taskdata
from kbit.kernels import QuantConfig
from kbit.sweeps import EvalSpec, ModelSpec
from kbit.workers import evaluate_configs

MEAN = "mean_zero_shot"
ACC_TASKS = ("kbit_lastword", "kbit_choice")


def build(name: str) -> list[dict]:
    """Build (or reuse) every member; per member its id, parameters, tokens and build seconds."""
    rows = []
    for member in members.family_members(name):
        started = time.perf_counter()
        members.ensure_model(member)
        took = time.perf_counter() - started
        train = members.build_info(member)["train"]
        rows.append({"model": member, "params": train["n_params"], "tokens": train["tokens"],
                     "build_s": took if took > 1 else train["seconds"], "reused": took <= 1})
    return rows


def evaluate(row: dict, spec: EvalSpec) -> dict:
    """The 16-bit metrics of one member: {(task, metric): (value, stderr)} and its eval seconds."""
    [result] = evaluate_configs(ModelSpec(row["model"]), [QuantConfig(16)], spec)
    if result.status != "done":
        raise RuntimeError(f"{row['model']}: {result.error}")
    metrics = {(m["task"], m["metric"]): (m["value"], m["stderr"] or 0.0) for m in result.metrics}
    return {**row, "metrics": metrics, "eval_s": result.wall_time_s}


def _cell(metrics: dict, task: str, metric: str, digits: int = 3) -> str:
    value, se = metrics[(task, metric)]
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def table(rows: list[dict]) -> list[str]:
    head = ["model", "params", "train tokens", "build (s)", *(f"{t} acc" for t in ACC_TASKS),
            "mean zero-shot acc", "held-out bpb", "eval (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r["metrics"]
        cells = [r["model"], f"{r['params']:,}", f"{r['tokens']:,}", f"{r['build_s']:.0f}" + (" (reused)" if r["reused"] else ""),
                 *(_cell(m, t, "acc") for t in ACC_TASKS), _cell(m, MEAN, "acc"),
                 _cell(m, "kbit_heldout", "bits_per_byte", 4), f"{r['eval_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def goals(rows: list[dict], chance: dict[str, float]) -> list[str]:
    """One line per goal, each ending in ok or MISSED."""
    out = []
    for task in ACC_TASKS:
        accs = [r["metrics"][(task, "acc")][0] for r in rows]
        rising = all(a < b for a, b in zip(accs, accs[1:]))
        inside = all(chance[task] + 0.10 <= a <= 0.95 for a in accs)
        out.append(f"- {task}: rises with size {'ok' if rising else 'MISSED'}; "
                   f"within [{chance[task] + 0.10:.2f}, 0.95] {'ok' if inside else 'MISSED'} "
                   f"({', '.join(f'{a:.3f}' for a in accs)})")
    means = [r["metrics"][(MEAN, "acc")] for r in rows]
    spread, se = means[-1][0] - means[0][0], max(s for _, s in means)
    out.append(f"- mean zero-shot spread {spread:.3f} = {spread / se:.1f}x the largest stderr {se:.3f} "
               f"{'ok' if spread >= 3 * se else 'MISSED'} (goal 3x)")
    bpb = [r["metrics"][("kbit_heldout", "bits_per_byte")][0] for r in rows]
    out.append(f"- held-out bits per byte falls with size {'ok' if all(a > b for a, b in zip(bpb, bpb[1:])) else 'MISSED'}")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="demo")
    ap.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    spec = EvalSpec(limit=args.limit, batch_size=args.batch_size)
    rows = [evaluate(row, spec) for row in build(args.family)]
    chance = {t: taskdata.chance(t) for t in ACC_TASKS}
    docs = {t: len(taskdata.load_docs(t)) for t in taskdata.TASKS}
    if args.limit:
        docs = {t: min(n, args.limit) for t, n in docs.items()}
    print("\n".join(table(rows)))
    print("\nchance: " + ", ".join(f"{t} {c:.3f}" for t, c in chance.items())
          + f", {MEAN} {sum(chance.values()) / len(chance):.3f}; documents: "
          + ", ".join(f"{t} {n}" for t, n in docs.items()) + "\n")
    print("\n".join(goals(rows, chance)))


if __name__ == "__main__":
    main()

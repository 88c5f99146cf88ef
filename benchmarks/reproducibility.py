"""Are kbit's answers reproducible? Runs `kbit demo` from scratch three times, each in its own
KBIT_HOME: the family built twice with the same number of torch CPU threads, once with another
(the sweep itself as Ray runs it, one thread per task), then compares.

    python -m benchmarks.reproducibility [--family micro] [--threads 1 2] [--metric M ...]

Prints, per metric: the largest difference of any run's score between the two same-thread
repeats (expected: 0) and between the thread counts (the family is trained anew, so its weights
differ in the last bits), that difference against the median stderr, and every verdict (each
budget's winner or undecided, and the paper's three findings) side by side, flagging a decided
verdict that flips.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("mean_zero_shot/acc", "kbit_heldout/bits_per_byte")


def python(home: Path, args: list[str], threads: int | None = None) -> str:
    """Run `python ARGS` with KBIT_HOME=home; `threads` pins torch's CPU threads (the build only:
    the sweep's Ray tasks get one thread each from Ray, and more would oversubscribe the cores)."""
    env = dict(os.environ, KBIT_HOME=str(home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("KBIT_DATABASE_URL", None)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
        if threads:
            env[name] = str(threads)
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"python {' '.join(args)} failed in {home}:\n{done.stderr[-3000:]}")
    return done.stdout


def kbit(home: Path, *args: str) -> str:
    return python(home, ["-m", "kbit.cli.main", *args])


def one_demo(root: Path, name: str, threads: int, family: str, metrics) -> dict:
    home = root / name
    started = time.perf_counter()
    python(home, ["-c", f"from kbit.family.members import ensure_family; ensure_family({family!r})"], threads)
    kbit(home, "demo", "--family", family)
    runs = json.loads(kbit(home, "results", "--format", "json"))
    reports = {m: json.loads(kbit(home, "report", "--format", "json", "--metric", m)) for m in metrics}
    print(f"{name}: {threads} thread(s), {len(runs)} runs, {time.perf_counter() - started:.0f} s", flush=True)
    return {"runs": runs, "reports": reports}


def scores(result: dict, metric: str) -> dict:
    return {(r["model"], r["label"]): (r.get(metric), r.get(f"{metric}_stderr")) for r in result["runs"]}


def largest_gap(a: dict, b: dict, metric: str) -> tuple[float, float]:
    """(largest |difference| of one run's score, median stderr)."""
    left, right = scores(a, metric), scores(b, metric)
    gaps = [abs(left[k][0] - right[k][0]) for k in left if k in right and left[k][0] is not None and right[k][0] is not None]
    errs = sorted(e for _, e in left.values() if e)
    return (max(gaps) if gaps else float("nan")), (errs[len(errs) // 2] if errs else float("nan"))


def verdicts(report: dict) -> dict:
    out = {}
    for b in report["budgets"]:
        if b["winner"]:
            out[f"budget {b['budget_bits'] / 1e6:.3f} Mbit"] = b["winner"] if b["decided"] else "undecided"
    for f in report["findings"]:
        out[f["id"]] = f["verdict"]
    return out


def decided(word: str) -> bool:
    return word not in ("undecided", "not enough data")


def compare(results: dict, metrics) -> int:
    flips = 0
    names = list(results)
    for metric in metrics:
        print(f"\n## {metric}")
        for a, b in ((names[0], names[1]), (names[0], names[2])):
            gap, stderr = largest_gap(results[a], results[b], metric)
            print(f"largest score difference {a} vs {b}: {gap:.2e} ({gap / stderr:.3f} of the median stderr {stderr:.4f})")
        rows = [verdicts(results[n]["reports"][metric]) for n in names]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        print("| verdict | " + " | ".join(names) + " | flip |")
        print("|---|" + "---|" * len(names) + "---|")
        for key in keys:
            words = [r.get(key, "–") for r in rows]
            flip = len(set(words)) > 1 and any(map(decided, words))
            flips += flip
            print(f"| {key} | " + " | ".join(words) + f" | {'FLIP' if flip else ''} |")
    return flips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="micro", help="bundled family to run the demo grid over (default micro)")
    parser.add_argument("--threads", type=int, nargs=2, default=(1, 2), metavar=("SAME", "OTHER"))
    parser.add_argument("--metric", action="append", help=f"metric (default {', '.join(METRICS)})")
    args = parser.parse_args()
    metrics = args.metric or list(METRICS)
    with tempfile.TemporaryDirectory(prefix="kbit-repro-") as tmp:
        root = Path(tmp)
        same, other = args.threads
        results = {
            f"A ({same} thr)": one_demo(root, "a", same, args.family, metrics),
            f"A' ({same} thr)": one_demo(root, "a2", same, args.family, metrics),
            f"B ({other} thr)": one_demo(root, "b", other, args.family, metrics),
        }
        flips = compare(results, metrics)
    print(f"\n{flips} verdict(s) changed where at least one run decided; 'undecided' beside a decided verdict counts too")


if __name__ == "__main__":
    main()

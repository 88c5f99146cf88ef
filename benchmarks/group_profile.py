"""Where the time of one group goes: one bundled model, N configs of the demo grid, evaluated as a
worker evaluates them (kbit.workers.evaluate_configs with the demo's eval spec), under cProfile.
Prints the wall time per config and the share of each phase, as a markdown table.

    python -m benchmarks.group_profile [--model kbit/demo/s4] [--configs 8] [--limit 150]

Phases are the cumulative time of the functions that own them (they nest, so shares of nested
phases are inside their parents'): quantize (kbit.kernels.quantize_model_), lm-eval request
building (Task.build_all_requests), tokenization (HFLM.tok_encode), the forward passes
(HFLM._model_call), lm-eval's post-processing and bootstrap (_process_results), result records
(kbit.workers.results).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from kbit.cli.demo import default_sweep_path
from kbit.family import family_members
from kbit.sweeps import EvalSpec, ModelSpec
from kbit.sweeps.reader import load_sweep
from kbit.workers import evaluate_configs

PHASES = {  # phase -> (file suffix, function name) of its owning function in the profile
    "quantize + restore": [("kernels/model.py", "quantize_model_"), ("kernels/model.py", "restore_model_")],
    "lm-eval request building": [("api/task.py", "build_all_requests")],
    "tokenization": [("models/huggingface.py", "tok_encode")],
    "forward passes": [("models/huggingface.py", "_model_call")],
    "lm-eval metrics + bootstrap": [("lm_eval/evaluator.py", "_process_results")],
    "kbit result records": [("workers/results.py", "document_scores"), ("workers/results.py", "flatten_metrics"),
                            ("workers/results.py", "sample_records")],
    "HFLM construction": [("models/huggingface.py", "__init__")],
}


def phase_seconds(stats: pstats.Stats) -> dict[str, float]:
    out = {}
    for phase, owners in PHASES.items():
        total = 0.0
        for (file, line, name), (_, _, _, cumulative, _) in stats.stats.items():
            if any(file.endswith(suffix) and name == fn for suffix, fn in owners):
                total += cumulative
        out[phase] = total
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="kbit/demo/s4")
    ap.add_argument("--configs", type=int, default=8, help="how many configs of the demo grid (first N)")
    ap.add_argument("--limit", type=int, default=None, help="documents per task (default: the demo's)")
    ap.add_argument("--top", type=int, default=0, help="also print the N functions with the most own time")
    args = ap.parse_args(argv)
    sweep = load_sweep(default_sweep_path(), family_members=family_members)
    spec = EvalSpec.from_dict({**sweep.eval.to_dict(), **({"limit": args.limit} if args.limit else {})})
    configs = list(sweep.configs)[: args.configs]
    # Load once outside the profile: a worker keeps its model between groups.
    list(evaluate_configs(ModelSpec(args.model), configs[:1], spec))
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    results = list(evaluate_configs(ModelSpec(args.model), configs, spec))
    profile.disable()
    wall = time.perf_counter() - started
    failed = [r for r in results if r.status != "done"]
    phases = phase_seconds(pstats.Stats(profile))
    print(f"{args.model}, {len(configs)} configs, limit {spec.limit}, batch {spec.batch_size}: "
          f"{wall:.2f} s, {wall / len(configs):.2f} s per config" + (f", {len(failed)} failed" if failed else ""))
    print("\n| phase | s per config | share of wall |\n|---|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds / len(configs):.3f} | {seconds / wall:.0%} |")
    if args.top:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()

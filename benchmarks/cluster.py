"""Scheduler benchmark: overhead per run, model loads per sweep, and the demo grid end to end.

    .venv/bin/python benchmarks/cluster.py              # overhead (1,000 runs, no-op evaluator) + demo grid
    .venv/bin/python benchmarks/cluster.py --skip-demo  # overhead only

1. A 1,000-run sweep (8 models x 125 configs) with the no-op evaluator on the embedded cluster:
   wall time from submit to the last result, so everything measured is the scheduler's own work
   (claiming, launching Ray tasks, leases, one transaction per stored result).
2. Model loads: each group task loads its model once, so loads = tasks launched.
3. `kbit demo`'s grid (examples/demo.yaml) with the real evaluator, end to end, in a fresh KBIT_HOME
   (family build included) and again with everything cached.

Prints the figures and writes them to benchmarks/cluster.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

OVERHEAD_SWEEP = """\
name: scheduler-overhead
models: [bench/m0, bench/m1, bench/m2, bench/m3, bench/m4, bench/m5, bench/m6, bench/m7]
grid:
  bits: [2, 3, 4, 5, 6]
  dtypes: [int, fp, nf, quantile, dynamic]
  blocksizes: [32, 64, 128, 256, 512]
baseline: false
tasks: [none]
"""


def overhead(runs_per_task: int) -> dict:
    from ray import get

    from kbit.cli.progress import wait_for_sweep
    from kbit.cluster.client import RayService
    from kbit.db import connect, session_scope, teams
    from kbit.sweeps.reader import parse_sweep

    engine = connect()
    with session_scope(engine) as s:
        token = teams.create_team(s, f"bench{runs_per_task}")
    text = OVERHEAD_SWEEP.replace("scheduler-overhead", f"overhead-{runs_per_task}")
    sweep = parse_sweep(text.replace("bench/", f"bench{runs_per_task}/"),  # fresh cache keys per case
                        family_members=lambda f: [])
    assert sweep.n_runs == 1000
    started = time.perf_counter()
    with RayService(None, evaluate="noop", scheduler_options={"max_runs_per_group": runs_per_task},
                    scheduler_name=f"bench-{runs_per_task}") as svc:
        ready = time.perf_counter()
        reply = svc.submit(sweep.spec(), f"bench{runs_per_task}", token)
        submitted = time.perf_counter()
        final = wait_for_sweep(svc, reply["sweep_id"], poll_s=0.05)
        finished = time.perf_counter()
        info = get(svc.actor.ping.remote())
    assert final["done"] == 1000, final
    return {
        "runs": 1000, "models": 8, "max_runs_per_group": runs_per_task, "startup_s": ready - started,
        "submit_s": submitted - ready, "run_s": finished - submitted,
        "overhead_ms_per_run": (finished - submitted) / 1000 * 1000, "tasks": info["groups_launched"],
    }


def demo(home: Path) -> dict:
    env = dict(os.environ, KBIT_HOME=str(home))
    env.pop("KBIT_DATABASE_URL", None)
    kbit = [sys.executable, "-m", "kbit.cli.main", "demo"]
    out = {}
    for label in ("fresh", "cached"):
        started = time.perf_counter()
        done = subprocess.run(kbit, env=env, capture_output=True, text=True, cwd=REPO)
        out[f"{label}_s"] = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"kbit demo failed ({label}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        out[f"{label}_tail"] = done.stdout.strip().splitlines()[-12:]
    from kbit.db import connect, queries, session_scope

    os.environ["KBIT_HOME"] = str(home)
    with session_scope(connect()) as s:
        sweeps = queries.list_sweeps(s, team="demo")
    out["runs"] = sweeps[0]["total"] if sweeps else 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-demo", action="store_true", help="only the scheduler overhead")
    parser.add_argument("--output", default=str(HERE / "cluster.md"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    lines = [
        "# Scheduler benchmark (`benchmarks/cluster.py`)", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Embedded mode: a local Ray in the process and SQLite.", "",
        "## Overhead per run (1,000 runs, no-op evaluator)", "",
        "| runs per task (cap) | Ray tasks = model loads | submit 1,000 runs | submit to last result | overhead per run |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as home:
        os.environ["KBIT_HOME"] = home
        for cap in (64, 16):
            r = overhead(cap)
            print(f"overhead cap={cap}: {r}")
            lines.append(f"| {cap} | {r['tasks']} (8 models) | {r['submit_s']:.2f} s | {r['run_s']:.2f} s | "
                         f"{r['overhead_ms_per_run']:.1f} ms |")
    lines += ["", "Model loads per sweep = Ray tasks: a task loads its model once for all its runs. A model's "
              "runs are split into tasks of at most the cap (and spread over all the cluster's slots when the "
              "queue is short, `Scheduler.group_size`), so loads = sum over models of ceil(runs / task size): 8 x "
              "ceil(125 / 64) = 16 and 8 x ceil(125 / 16) = 64 above.", ""]
    if not args.skip_demo:
        with tempfile.TemporaryDirectory() as home:
            d = demo(Path(home))
        print(f"demo: {d}")
        lines += ["## `kbit demo` end to end (examples/demo.yaml)", "",
                  f"{d['runs']} runs. Fresh KBIT_HOME (family build included): {d['fresh_s']:.0f} s. "
                  f"Second run (family and results cached): {d['cached_s']:.0f} s.", "",
                  "Last lines of the first run:", "", "```", *d["fresh_tail"], "```", ""]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()

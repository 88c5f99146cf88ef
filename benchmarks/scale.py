"""Scale-out benchmark: kbit's real scheduler actor and worker pool on a local multi-node Ray cluster.

    .venv/bin/python benchmarks/scale.py --nodes 4 --gpus-per-node 2 --runs 1000 --models 8 --sleep 0
    .venv/bin/python benchmarks/scale.py --nodes 4 --gpus-per-node 2 --runs 1000 --sleep 0.05 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres --kill-node --kill-scheduler

A `ray.cluster_utils.Cluster` with a head (no GPU, holds the driver and the scheduler actor) and N
worker raylets, each with a fake `num_gpus=G` and `num_cpus=1`, so the pool sees N*G GPUs and
starts one long-lived worker actor on each (no `memory_gb`: a whole GPU per worker). The scheduler
is kbit's own (`kbit.cluster.client.RayService`, the same actor and `WorkerPool` as production)
against a fresh database: a SQLite file by default; with --database-url, a fresh database created
on that Postgres server and dropped after. The evaluator is a callable passed through RayService's
`evaluate=` (the mechanism the cluster tests use): for each group it takes the model from the
worker's model cache ("loading" it in --load-s seconds on a miss), then sleeps S seconds per config
and yields one metric per result, so duplicates can be counted.

First a warm-up sweep (one run per worker) starts the pool; its time is reported as pool start.
Then the measured sweep. Prints: runs per second; dispatch overhead per run =
(wall - R*S/(N*G)) / R, the time beyond what N*G perfectly busy workers would need; groups
launched and model loads (summed over the workers' caches) against the minimum (one per model);
every run done exactly once (runs table + one result row each); the memory of the raylets and of
all Ray processes. --kill-node removes one worker raylet after ~30% of the runs and reports lost
runs, attempts charged and how long the node's runs took to come back. --kill-scheduler SIGKILLs
the scheduler actor's process after ~50% of the runs (Ray restarts it; it adopts the running
groups) and reports groups adopted and attempts charged. --json appends one line of figures to a
file (benchmarks/scale.md is written by hand from them).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def sleepy_evaluate(seconds: float, load_s: float):
    """kbit's noop result for each config after `seconds` of sleep, with one metric to count; the
    model comes from the worker's cache, "loaded" in `load_s` seconds on a miss."""

    def evaluate(model, revision, configs, eval_spec, should_stop, cache=None):
        import time as _time

        with cache.use((model, revision), lambda: _time.sleep(load_s) or model, lambda loaded: 1):
            for config in configs:
                if should_stop():
                    return
                if seconds:
                    _time.sleep(seconds)
                yield {"config": config, "status": "done", "error_type": None, "error": None,
                       "metrics": [{"task": "t", "metric": "acc", "value": 0.5, "stderr": 0.01}], "bits": None,
                       "wall_time_s": seconds, "peak_memory_bytes": 0, "device": "none",
                       "provenance": {"evaluator": "scale-bench"}, "samples": None}

    return evaluate


def make_sweep(runs: int, models: int, tag: str):
    """One sweep of exactly `runs` runs over `models` models (runs must divide evenly)."""
    from kbit.sweeps.reader import parse_sweep

    if runs % models:
        raise SystemExit(f"--runs {runs} must be a multiple of --models {models}")
    per_model = runs // models
    base = 7 * 5 * 8  # bits 2..8 x 5 dtypes x 8 block sizes
    outliers = [round(0.001 * i, 3) for i in range(math.ceil(per_model / base))]
    text = (f"name: scale-{tag}\nmodels: [{', '.join(f'scale{tag}/m{i}' for i in range(models))}]\n"
            "grid:\n  bits: [2, 3, 4, 5, 6, 7, 8]\n  dtypes: [int, fp, nf, quantile, dynamic]\n"
            "  blocksizes: [32, 64, 128, 256, 512, 1024, 2048, 4096]\n"
            f"  outlier_fractions: [{', '.join(map(str, outliers))}]\n"
            "baseline: false\ntasks: [none]\n")
    sweep = parse_sweep(text, family_members=lambda f: [])
    sweep = dataclasses.replace(sweep, configs=tuple(sweep.configs[:per_model]))
    assert sweep.n_runs == runs, (sweep.n_runs, runs)
    return sweep


def ray_memory() -> dict:
    """RSS (MiB) of the raylets, and of every Ray process (gcs, raylets, workers, agents)."""
    import psutil

    raylets, total, count = [], 0, 0
    for proc in psutil.process_iter(["name", "cmdline", "memory_info"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            rss = proc.info["memory_info"].rss / 2**20
        except (psutil.Error, TypeError, AttributeError):
            continue
        if "raylet/raylet" in cmd or proc.info["name"] == "raylet":
            raylets.append(rss)
        if any(k in cmd for k in ("ray/core/src", "raylet", "gcs_server", "ray::", "default_worker.py",
                                  "dashboard/agent.py", "runtime_env/agent", "log_monitor.py", "monitor.py")):
            total += rss
            count += 1
    avail = psutil.virtual_memory().available / 2**20
    return {"raylets": len(raylets), "raylet_rss_mib": sum(raylets) / max(len(raylets), 1),
            "ray_total_rss_mib": total, "ray_processes": count, "available_mib": avail}


@contextlib.contextmanager
def database(url: str | None):
    if url:
        from tests.support.postgres import fresh_postgres

        with fresh_postgres(url, prefix="kbit_scale") as fresh:
            yield fresh
    else:
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/kbit.db"


def run_counts(engine, sweep_id: int) -> dict:
    from sqlalchemy import func, select

    from kbit.db import session_scope
    from kbit.db.models import Result, Run

    with session_scope(engine) as s:
        status = dict(s.execute(select(Run.status, func.count()).where(Run.sweep_id == sweep_id)
                                .group_by(Run.status)).all())
        attempts = s.scalar(select(func.sum(Run.attempts)).where(Run.sweep_id == sweep_id)) or 0
        retried = s.scalar(select(func.count()).where(Run.sweep_id == sweep_id, Run.attempts > 1)) or 0
        lost = s.scalar(select(func.count()).where(Run.sweep_id == sweep_id, Run.error_type == "node_lost")) or 0
        per_run = dict(s.execute(select(Result.run_id, func.count()).join(Run, Run.id == Result.run_id)
                                 .where(Run.sweep_id == sweep_id, Result.task == "t")
                                 .group_by(Result.run_id)).all())
    return {"status": status, "attempts": int(attempts), "retried_runs": int(retried), "lost_with_node": int(lost),
            "results_per_run": sorted(set(per_run.values())), "runs_with_result": len(per_run)}


def wait_done(svc, sweep_id: int, runs: int, timeout_s: float, check_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        progress = svc.progress(sweep_id)
        if progress["done"] + progress.get("failed", 0) + progress.get("cancelled", 0) >= runs:
            return True
        time.sleep(check_s)
    return False


def model_loads(svc) -> int:
    import ray

    return sum(w["loads"] or 0 for w in ray.get(svc.actor.workers.remote(), timeout=60))


def bench(args) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from kbit.cluster.actor import stop_scheduler
    from kbit.cluster.client import RayService
    from kbit.db import connect, session_scope, teams
    from tests.support.net import free_port

    slots = args.nodes * args.gpus_per_node
    out = {"nodes": args.nodes, "gpus_per_node": args.gpus_per_node, "slots": slots, "runs": args.runs,
           "models": args.models, "sleep_s": args.sleep, "load_s": args.load_s,
           "max_runs_per_group": args.max_runs_per_group, "group_seconds": args.group_seconds, "lease_s": args.lease,
           "database": "postgres" if args.database_url else "sqlite", "kill_node": args.kill_node,
           "kill_scheduler": args.kill_scheduler}
    sweep = make_sweep(args.runs, args.models, tag=f"{args.nodes}x{args.gpus_per_node}")
    warmup = make_sweep(slots, slots, tag=f"warm{args.nodes}x{args.gpus_per_node}")
    name = "kbit-scale-bench"
    with database(args.database_url) as url:
        engine = connect(url)
        with session_scope(engine) as s:
            token = teams.create_team(s, "scale")
        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "num_gpus": 0, "gcs_server_port": free_port(), "include_dashboard": False})
        nodes = [cluster.add_node(num_cpus=1, num_gpus=args.gpus_per_node) for _ in range(args.nodes)]
        cluster.wait_for_nodes()
        out["cluster_start_s"] = time.perf_counter() - t0
        try:
            ray.init(address=cluster.address, namespace="kbit", log_to_driver=False)
            out["memory_idle"] = ray_memory()
            t1 = time.perf_counter()
            svc = RayService(cluster.address, db_url=url, evaluate=sleepy_evaluate(args.sleep, args.load_s),
                             scheduler_options={"lease_seconds": args.lease, "poll_s": args.poll,
                                                "max_runs_per_group": args.max_runs_per_group,
                                                "group_seconds": args.group_seconds},
                             scheduler_name=name)
            out["scheduler_start_s"] = time.perf_counter() - t1
            assert svc.info["capacity"] == slots, svc.info
            t2 = time.perf_counter()
            warm = svc.submit(warmup.spec(), "scale", token)
            if not wait_done(svc, warm["sweep_id"], slots, args.timeout, args.check_s):
                raise SystemExit("the warm-up sweep did not finish: the pool did not start")
            out["pool_start_s"] = time.perf_counter() - t2
            out["workers_started"] = len(ray.get(svc.actor.workers.remote()))
            loads_before, before = model_loads(svc), ray.get(svc.actor.ping.remote())
            started = time.perf_counter()
            reply = svc.submit(sweep.spec(), "scale", token)
            submitted = time.perf_counter()
            sweep_id = reply["sweep_id"]
            removed_at = requeued_at = back_at = killed_at = None
            peak_memory = None
            victim_running = None
            deadline = started + args.timeout
            while True:
                progress = svc.progress(sweep_id)
                now = time.perf_counter()
                done = progress["done"] + progress.get("failed", 0) + progress.get("cancelled", 0)
                if peak_memory is None and progress["done"] >= args.runs // 2:
                    peak_memory = ray_memory()
                if args.kill_node and removed_at is None and progress["done"] >= 0.3 * args.runs:
                    keep = {ray.get_runtime_context().get_node_id(), ray.get(svc.actor.ping.remote())["node_id"]}
                    victim = next(n for n in nodes if n.node_id not in keep)
                    victim_running = progress.get("running")
                    cluster.remove_node(victim)
                    removed_at = time.perf_counter()
                    out["removed_after_done"] = progress["done"]
                if args.kill_scheduler and killed_at is None and progress["done"] >= 0.5 * args.runs:
                    os.kill(ray.get(svc.actor.ping.remote())["pid"], signal.SIGKILL)
                    killed_at = time.perf_counter()
                    out["scheduler_killed_after_done"] = progress["done"]
                if removed_at is not None and (requeued_at is None or back_at is None):
                    counts = run_counts(engine, sweep_id)
                    if requeued_at is None and counts["lost_with_node"]:
                        requeued_at = time.perf_counter()
                    if requeued_at is not None and back_at is None:
                        st = counts["status"]
                        if st.get("running", 0) + st.get("queued", 0) == 0 or _lost_all_done(engine, sweep_id):
                            back_at = time.perf_counter()
                if done >= args.runs:
                    break
                if now > deadline:
                    out["timed_out"] = progress
                    break
                time.sleep(args.check_s)
            finished = time.perf_counter()
            info = ray.get(svc.actor.ping.remote())
            out.update({
                "submit_s": submitted - started, "wall_s": finished - started,
                "runs_per_s": args.runs / (finished - started),
                "ideal_s": args.runs * args.sleep / slots,
                "overhead_ms_per_run": (finished - started - args.runs * args.sleep / slots) / args.runs * 1000,
                "groups": info["groups_launched"] - (before["groups_launched"] if not args.kill_scheduler else 0),
                "groups_failed": info["groups_failed"], "model_loads": model_loads(svc) - loads_before,
                "min_loads": args.models, "groups_adopted": info["groups_adopted"],
                "runs_released_on_restart": info["runs_released_on_restart"],
                "runs_lost_with_node": info["runs_lost_with_node"], "memory_busy": peak_memory,
            })
            counts = run_counts(engine, sweep_id)
            out["db"] = counts
            out["exactly_once"] = (counts["status"].get("done", 0) == args.runs
                                   and counts["runs_with_result"] == args.runs and counts["results_per_run"] == [1])
            out["extra_attempts_charged"] = counts["attempts"] - args.runs
            if args.kill_node:
                out["running_at_removal"] = victim_running
                out["lost_runs"] = args.runs - counts["status"].get("done", 0)
                out["requeue_after_s"] = None if requeued_at is None else requeued_at - removed_at
                out["back_after_s"] = None if back_at is None else back_at - removed_at
            with contextlib.suppress(Exception):
                stop_scheduler(name)
        finally:
            with contextlib.suppress(Exception):
                ray.shutdown()
            cluster.shutdown()
            engine.dispose()
    return out


def _lost_all_done(engine, sweep_id: int) -> bool:
    """Whether every run that went back to the queue with its node is done again."""
    from sqlalchemy import func, select

    from kbit.db import session_scope
    from kbit.db.models import Run

    with session_scope(engine) as s:
        pending = s.scalar(select(func.count()).where(Run.sweep_id == sweep_id, Run.error_type == "node_lost",
                                                      Run.status != "done"))
    return pending == 0


def report(r: dict) -> str:
    lines = [
        f"{r['nodes']} nodes x {r['gpus_per_node']} GPUs = {r['slots']} slots, {r['runs']} runs over "
        f"{r['models']} models, {r['sleep_s']} s per run, {r['database']}, cap {r['max_runs_per_group']} runs/group, "
        f"group seconds {r.get('group_seconds', 0):g}",
        f"  cluster start {r['cluster_start_s']:.1f} s, scheduler start {r['scheduler_start_s']:.1f} s, "
        f"pool of {r['workers_started']} workers started in {r['pool_start_s']:.1f} s, submit {r['submit_s']:.2f} s",
        f"  wall {r['wall_s']:.1f} s (ideal {r['ideal_s']:.1f} s): {r['runs_per_s']:.1f} runs/s, "
        f"dispatch overhead {r['overhead_ms_per_run']:.1f} ms/run",
        f"  groups {r['groups']}, model loads {r['model_loads']} (minimum {r['min_loads']}), "
        f"groups failed {r['groups_failed']}",
        f"  every run done exactly once: {r['exactly_once']} ({r['db']})",
        f"  extra attempts charged: {r['extra_attempts_charged']}",
    ]
    if r.get("kill_node"):
        lines.append(f"  node removed after {r.get('removed_after_done')} done ({r.get('running_at_removal')} running): "
                     f"lost {r.get('lost_runs')}, {r.get('runs_lost_with_node')} runs back in the queue "
                     f"{_s(r.get('requeue_after_s'))} after removal, all done again {_s(r.get('back_after_s'))} after")
    if r.get("kill_scheduler"):
        lines.append(f"  scheduler SIGKILLed after {r.get('scheduler_killed_after_done')} done: "
                     f"{r.get('groups_adopted')} running groups adopted by its restart, "
                     f"{r.get('runs_released_on_restart')} claimed runs no worker had started requeued uncharged")
    for key in ("memory_idle", "memory_busy"):
        m = r.get(key)
        if m:
            lines.append(f"  {key}: {m['raylets']} raylets x {m['raylet_rss_mib']:.0f} MiB RSS; all Ray processes "
                         f"{m['ray_total_rss_mib']:.0f} MiB in {m['ray_processes']}; available {m['available_mib']:.0f} MiB")
    if r.get("timed_out"):
        lines.append(f"  TIMED OUT: {r['timed_out']}")
    return "\n".join(lines)


def _s(x):
    return "n/a" if x is None else f"{x:.1f} s"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--gpus-per-node", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each run's evaluation sleeps")
    parser.add_argument("--database-url", help="a Postgres server URL; a fresh database is created on it")
    parser.add_argument("--kill-node", action="store_true")
    parser.add_argument("--kill-scheduler", action="store_true")
    parser.add_argument("--load-s", type=float, default=0.0, help="seconds a model 'load' takes on a cache miss")
    parser.add_argument("--lease", type=float, default=10.0, help="lease seconds (KBIT_LEASE_SECONDS; 120 in production)")
    parser.add_argument("--poll", type=float, default=0.5, help="scheduler poll seconds (KBIT_POLL_SECONDS default)")
    parser.add_argument("--max-runs-per-group", type=int, default=16, help="KBIT_MAX_RUNS_PER_GROUP default")
    parser.add_argument("--group-seconds", type=float, default=30.0,
                        help="KBIT_GROUP_SECONDS default (0: every group max-runs-per-group runs, as before it existed)")
    parser.add_argument("--check-s", type=float, default=0.25, help="how often this driver polls progress")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", help="append the figures as one JSON line to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("KBIT_HOME", tempfile.mkdtemp(prefix="kbit-scale-"))
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    result = bench(args)
    print(report(result), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()

"""Long-lived workers on a local multi-node Ray cluster (ray.cluster_utils.Cluster, GPU nodes faked
with num_gpus): the scheduler's process killed mid-sweep costs nothing, a node that leaves loses no
run and charges no attempt, a node that joins gets work, and small models share a GPU without
ever holding more of it than fits."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import clustertest_helpers
import pytest
import ray
from clustertest_helpers import gated, placed_evaluate, provenances, results_per_run
from ray.cluster_utils import Cluster

from kbit.cli.progress import wait_for_sweep
from kbit.cluster.actor import stop_scheduler
from kbit.cluster.client import RayService
from tests.support.net import wait_until
from tests.support.scheduling import make_sweep, submit

pytestmark = pytest.mark.ray

ray.cloudpickle.register_pickle_by_value(clustertest_helpers)
GIB = 2**30


@contextlib.contextmanager
def gpu_cluster(nodes: int, gpus: int):
    """A head without GPUs (the driver and the scheduler) and `nodes` raylets of `gpus` fake GPUs."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    workers = [cluster.add_node(num_cpus=1, num_gpus=gpus) for _ in range(nodes)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="kbit")
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def service(cluster, db, name, lease_seconds=10.0, evaluate=placed_evaluate):
    return RayService(cluster.address, db_url=db[1], evaluate=evaluate, scheduler_name=name,
                      scheduler_options={"lease_seconds": lease_seconds, "poll_s": 0.2})


def test_the_scheduler_killed_mid_sweep_costs_no_attempt_and_workers_keep_their_models(db, offline_env, tmp_path):
    # Every group waits after each config until the gate opens, so groups are certainly running
    # when the restarted scheduler looks for them (short groups used to end before it came up).
    gate = tmp_path / "gate"
    with gpu_cluster(nodes=2, gpus=2) as (cluster, _):
        name = "kbit-test-sigkill"
        svc = service(cluster, db, name, evaluate=gated(placed_evaluate, str(gate)))
        try:
            reply = submit(db, make_sweep(name="sigkill", models=("m/a", "m/b"), bits=(3, 4, 5, 8)))  # 2 x 9 runs
            wait_until(lambda: svc.progress(reply["sweep_id"])["done"] >= 2)
            before = ray.get(svc.actor.ping.remote())
            workers_before = {w["name"]: w for w in ray.get(svc.actor.workers.remote())}
            assert any(w["state"] == "busy" for w in workers_before.values())
            os.kill(before["pid"], signal.SIGKILL)  # Ray restarts the actor: a new scheduler instance

            def restarted():
                with contextlib.suppress(ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    now = ray.get(svc.actor.ping.remote(), timeout=10)
                    return now if now["instance"] != before["instance"] and now["ticks"] >= 2 else None

            after = wait_until(restarted, timeout=120)
            gate.touch()
            assert after["groups_adopted"] >= 1
            final = wait_for_sweep(svc, reply["sweep_id"], poll_s=0.3, timeout_s=120)
            assert final["done"] == final["total"] == 18
            assert set(results_per_run(db[0], reply["sweep_id"]).values()) == {1}  # none twice
            assert {r["attempts"] for r in svc.results(reply["sweep_id"])} == {1}  # no attempt charged
            workers_after = {w["name"]: w for w in ray.get(svc.actor.workers.remote())}
            for worker_name, old in workers_before.items():
                new = workers_after[worker_name]  # the same worker process, adopted ...
                assert new["pid"] == old["pid"]
                assert {tuple(m) for m in old["loaded"]} <= {tuple(m) for m in new["loaded"]}  # ... its models kept
                assert new["loads"] == len(new["loaded"])  # no model was ever loaded twice by one worker
        finally:
            gate.touch()
            stop_scheduler(name)
            svc.close()


def test_a_node_that_leaves_loses_no_run_and_charges_nothing_and_a_node_that_joins_gets_work(db, offline_env):
    lease = 60.0
    with gpu_cluster(nodes=2, gpus=1) as (cluster, nodes):
        name = "kbit-test-elastic"
        svc = service(cluster, db, name, lease_seconds=lease)
        try:
            reply = submit(db, make_sweep(name="elastic", models=("m/a", "m/b", "m/c"), bits=(3, 4, 5, 8)))  # 27 runs
            wait_until(lambda: svc.progress(reply["sweep_id"])["done"] >= 2)
            # A GPU node that hosts neither this driver nor the scheduler, and runs a group now.
            keep = {ray.get_runtime_context().get_node_id(), ray.get(svc.actor.ping.remote())["node_id"]}

            def busy_node():
                busy = {w["node_id"] for w in ray.get(svc.actor.workers.remote()) if w["state"] == "busy"}
                return next((node for node in nodes if node.node_id not in keep and node.node_id in busy), None)

            victim = wait_until(busy_node, timeout=30)
            cluster.remove_node(victim)
            removed_at = time.monotonic()
            joined = cluster.add_node(num_cpus=1, num_gpus=1)
            final = wait_for_sweep(svc, reply["sweep_id"], poll_s=0.3, timeout_s=lease)
            assert time.monotonic() - removed_at < lease  # the lost runs came back, not by their lease running out
            assert final["done"] == final["total"] == 27
            assert set(results_per_run(db[0], reply["sweep_id"]).values()) == {1}
            rows = svc.results(reply["sweep_id"])
            assert {r["attempts"] for r in rows} == {1}  # the lost node's runs were not charged
            info = ray.get(svc.actor.ping.remote())
            assert info["runs_lost_with_node"] >= 1
            assert joined.node_id in {p["node_id"] for p in provenances(db[0], reply["sweep_id"])}
        finally:
            stop_scheduler(name)
            svc.close()


def test_small_models_share_a_gpu_and_never_hold_more_than_fits(db, offline_env):
    needs = {"m/s1": 10, "m/s2": 10, "m/s3": 10, "m/mid": 30, "m/big": 60}  # GiB, on an 80 GiB GPU
    models = tuple(f"{{model: {m}, memory_gb: {gib}}}" for m, gib in needs.items())
    with gpu_cluster(nodes=1, gpus=1) as (cluster, _):
        name = "kbit-test-packing"
        svc = service(cluster, db, name)
        try:
            # 5 models x 9 runs: a group of 9 configs lasts ~4 s, longer than a worker takes to start
            reply = submit(db, make_sweep(name="packing", models=models, bits=(3, 4, 5, 8)))
            final = wait_for_sweep(svc, reply["sweep_id"], poll_s=0.3, timeout_s=180)
            assert final["done"] == final["total"] == 45
            runs = provenances(db[0], reply["sweep_id"])
        finally:
            stop_scheduler(name)
            svc.close()
    assert {p["gpu_ids"][0] for p in runs} == {runs[0]["gpu_ids"][0]}  # one GPU
    expected_share = {"m/s1": 0.125, "m/s2": 0.125, "m/s3": 0.125, "m/mid": 0.5, "m/big": 1.0}
    assert all(p["gpu_share"] == expected_share[p["model"]] for p in runs)
    most_at_once = 0
    for p in runs:  # at the start of every config: what else was running on the GPU then
        moment = p["start"] + 0.01
        running = [q for q in runs if q["start"] <= moment < q["end"]]
        assert sum(needs[q["model"]] for q in running) <= 80, running
        assert sum(q["gpu_share"] for q in running) <= 1.0
        most_at_once = max(most_at_once, len({q["pid"] for q in running}))
    assert most_at_once >= 3  # small models did share the GPU

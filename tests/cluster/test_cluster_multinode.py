"""A node removed from a local multi-node cluster (ray.cluster_utils.Cluster, GPU nodes faked with
num_gpus) in the middle of a sweep: its runs are retried elsewhere, every run ends with one result."""

from __future__ import annotations

import time

import clustertest_helpers
import ray
from clustertest_helpers import make_sweep, results_per_run, slow_evaluate, submit
from ray.cluster_utils import Cluster

from kbit.cli.progress import wait_for_sweep
from kbit.cluster.client import RayService

ray.cloudpickle.register_pickle_by_value(clustertest_helpers)


def test_a_node_removed_mid_sweep_has_its_runs_retried_on_the_others(db, offline_env):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="kbit")
    try:
        svc = RayService(cluster.address, db_url=db[1], evaluate=slow_evaluate,
                         scheduler_options={"lease_seconds": 5.0, "poll_s": 0.2}, scheduler_name="kbit-test-multinode")
        assert svc.info["capacity"] == 2  # one task per (fake) GPU
        reply = submit(db, make_sweep(name="remove-node", models=("m/a", "m/b"), bits=(3, 4, 8)))  # 2 x 7 runs
        deadline = time.monotonic() + 60
        while svc.progress(reply["sweep_id"])["done"] < 2:
            assert time.monotonic() < deadline, "no progress before the node removal"
            time.sleep(0.2)
        # Remove a GPU node that hosts neither this driver nor the scheduler (all raylets share
        # 127.0.0.1, so either may have landed on a worker node): only its tasks die.
        keep = {ray.get_runtime_context().get_node_id(), svc.info["node_id"]}
        victim = next(node for node in workers if node.node_id not in keep)
        cluster.remove_node(victim)
        final = wait_for_sweep(svc, reply["sweep_id"], poll_s=0.3, timeout_s=150)
        assert final["done"] == final["total"] == 14
        assert set(results_per_run(db[0], reply["sweep_id"]).values()) == {1}
        info = ray.get(svc.actor.ping.remote())
        assert info["tasks_failed"] >= 1
        rows = svc.results(reply["sweep_id"])
        assert max(r["attempts"] for r in rows) >= 2  # the removed node's runs ran again
    finally:
        ray.shutdown()
        cluster.shutdown()

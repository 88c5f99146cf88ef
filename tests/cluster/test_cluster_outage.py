"""The database goes away mid-sweep on a real Ray cluster and a real PostgreSQL (through a TCP
proxy the test cuts): every run still ends exactly once, no finished result is lost, and no run
is charged an attempt for the outage."""

from __future__ import annotations

import time

import clustertest_helpers
import pytest
import ray
from clustertest_helpers import results_per_run, slow_evaluate, wait_for_free_cpus
from sqlalchemy.engine import make_url
from tcpproxy import TcpProxy

from kbit.cli.progress import wait_for_sweep
from kbit.cluster.actor import stop_scheduler
from kbit.cluster.client import RayService
from kbit.db import connect, session_scope, teams
from kbit.service import Operations
from tests.support.scheduling import make_sweep

pytestmark = [pytest.mark.ray, pytest.mark.outage]

ray.cloudpickle.register_pickle_by_value(clustertest_helpers)

OUTAGE_S = 10.0  # a database restart; long enough for four rounds of retries (0.5, 1, 2, 4 s) to meet it


def test_a_database_outage_mid_sweep_loses_no_result_and_charges_no_attempt(ray_head, fresh_postgres_database):
    with fresh_postgres_database() as direct_url:
        direct = make_url(direct_url)
        proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
        url = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = connect(direct_url)  # the test's own view, not through the proxy
        with session_scope(engine) as s:
            token = teams.create_team(s, "nlp")
        name = "kbit-test-outage"
        svc = RayService(ray_head["address"], db_url=url, evaluate=slow_evaluate,
                         scheduler_options={"lease_seconds": 60.0, "poll_s": 0.2}, scheduler_name=name)
        wait_for_free_cpus()
        try:
            sweep = make_sweep(name="outage", models=("m/a", "m/b"), bits=(3, 4, 5, 8), dtypes=("int", "nf"))
            reply = Operations(engine).submit(sweep.spec(), "nlp", token)  # 2 x 9 runs
            deadline = time.monotonic() + 60
            while Operations(engine).progress(reply["sweep_id"])["done"] < 3:
                assert time.monotonic() < deadline, "the sweep never got going"
                time.sleep(0.2)
            proxy.cut()  # the database is gone for everyone on the cluster
            time.sleep(OUTAGE_S)
            proxy.restore()
            final = wait_for_sweep(Operations(engine), reply["sweep_id"], poll_s=0.5, timeout_s=180)
        finally:
            stop_scheduler(name)
            svc.close()
            proxy.cut()
        assert final["done"] == final["total"] == 18 and final["failed"] == 0
        assert set(results_per_run(engine, reply["sweep_id"]).values()) == {1}  # each result stored once
        attempts = [r["attempts"] for r in Operations(engine).results(reply["sweep_id"])]
        assert max(attempts) == 1, attempts  # the outage charged no run an attempt
        engine.dispose()

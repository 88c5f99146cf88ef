"""Fixtures of the cluster tests: a real Ray head shared by the session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def ray_head(offline_env):
    """A real Ray head on 127.0.0.1 with the default scheduler, started like `kbit up` (which this
    also tests), on free ports; stopped with `kbit down` after the cluster tests, so the tests that
    run after them in the same process (make test runs two) find no local service to talk to."""
    import os

    from kbit.cli import localcluster
    from tests.support.net import free_port

    # Several schedulers share this head's 2 CPUs one test after another: a scheduler's idle workers
    # give their CPU back after 3 s, not a minute, so the next test's workers find room.
    os.environ["KBIT_WORKER_IDLE_S"] = "3"
    try:
        state = localcluster.up(gcs_port=free_port(), client_port=free_port(), num_cpus=2, dashboard=False,
                                say=lambda *_: None)
    finally:
        del os.environ["KBIT_WORKER_IDLE_S"]
    yield state
    assert localcluster.down(say=lambda *_: None)
    assert localcluster.read_state() is None
    assert localcluster.session_processes(state["head_pid"]) == []  # head, raylet, workers, scheduler: all gone


@pytest.fixture(scope="module", autouse=True)
def no_kept_client_connection():
    """A module's Ray client connection (kept open between its CLI calls) closed after it: the next
    module may start or join another cluster itself."""
    yield
    from kbit.cluster.connect import disconnect, kept_address

    if kept_address() is not None:
        disconnect()

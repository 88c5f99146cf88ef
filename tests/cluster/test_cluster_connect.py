"""A Ray client connect that the head's proxy fails: retried by tries, not by a clock one slow try
uses up, and reported with the line that says what failed; a client connection kept for the next
connect to its address (no Ray is started: ray.init is faked)."""

from __future__ import annotations

import pytest

from kbit.cluster import connect
from kbit.errors import ClusterUnreachable

PROXY_FAILURE = ("Initialization failure from server:\nTraceback (most recent call last):\n"
                 '  File "proxier.py", line 777, in Datapath\n'
                 "RuntimeError: Proxy failed to Connect to backend! Check `ray_client_server.err`\n")


@pytest.fixture
def fake_head(monkeypatch):
    """A head whose port answers and whose proxy fails the first `failures` connects."""
    calls = {"init": 0, "failures": 0}

    def init(address, **kwargs):
        calls["init"] += 1
        if calls["init"] <= calls["failures"]:
            raise ConnectionAbortedError(PROXY_FAILURE)

    monkeypatch.setattr(connect, "_tcp_check", lambda *a, **k: None)
    monkeypatch.setattr(connect, "_use_token_auth_if_available", lambda: None)
    monkeypatch.setattr(connect.ray, "init", init)
    monkeypatch.setattr(connect.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(connect, "FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(connect, "_kept_address", None)
    return calls


def test_a_connect_the_proxy_fails_three_times_succeeds_on_the_fourth_try(fake_head):
    fake_head["failures"] = 3
    assert connect.connect_ray("ray://127.0.0.1:10001") == "client"
    assert fake_head["init"] == 4


def test_the_error_after_the_last_try_names_what_failed_on_the_head(fake_head):
    fake_head["failures"] = 99
    with pytest.raises(ClusterUnreachable) as caught:
        connect.connect_ray("ray://127.0.0.1:10001")
    assert fake_head["init"] == connect.CONNECT_ATTEMPTS
    message = str(caught.value)
    assert "Initialization failure from server: RuntimeError: Proxy failed to Connect to backend!" in message
    assert "\n" not in message and "Traceback" not in message


def test_slow_failed_tries_do_not_use_up_the_budget_before_its_tries(fake_head, monkeypatch):
    """One try that the proxy fails after its 30 s channel wait took ~45 s on a loaded CI machine;
    with a 60 s budget that left one more try. The budget is counted in tries."""
    clock = {"now": 0.0}
    monkeypatch.setattr("time.monotonic", lambda: clock["now"])

    def slow_init(address, **kwargs):
        clock["now"] += 45.0
        fake_head["init"] += 1
        if fake_head["init"] < 4:
            raise ConnectionAbortedError(PROXY_FAILURE)

    monkeypatch.setattr(connect.ray, "init", slow_init)
    assert connect.connect_ray("ray://127.0.0.1:10001") == "client"
    assert fake_head["init"] == 4


@pytest.fixture
def fake_ray(fake_head, monkeypatch):
    """fake_head, plus Ray's connection state: ray.init connects (a client for ray://), shutdown closes."""
    state = {"initialized": False, "client": False, "shutdowns": 0}

    def init(address=None, **kwargs):
        fake_head["init"] += 1
        state.update(initialized=True, client=str(address).startswith("ray://"))

    def shutdown():
        state.update(initialized=False, client=False)
        state["shutdowns"] += 1

    monkeypatch.setattr(connect.ray, "init", init)
    monkeypatch.setattr(connect.ray, "shutdown", shutdown)
    monkeypatch.setattr(connect.ray, "is_initialized", lambda: state["initialized"])
    monkeypatch.setattr(connect.ray.util.client.ray, "is_connected", lambda: state["client"])
    return state


def test_a_released_client_connection_is_reused_by_the_next_connect_to_its_address(fake_ray, fake_head):
    head = "ray://127.0.0.1:10001"
    assert connect.connect_ray(head) == "client"
    connect.release()
    assert connect.connect_ray(head) == "client" and connect.kept_address() == head
    assert fake_head["init"] == 1 and fake_ray["shutdowns"] == 0  # one server process on the head, not two
    connect.release()
    assert connect.connect_ray("ray://127.0.0.1:10002") == "client"  # another head: closed, then connected
    assert fake_head["init"] == 2 and fake_ray["shutdowns"] == 1
    assert connect.connect_ray(None) == "embedded"  # an embedded Ray: the client connection closed first
    assert fake_ray["shutdowns"] == 2 and connect.kept_address() is None
    connect.release()  # an embedded Ray is not kept
    assert fake_ray["shutdowns"] == 3 and not fake_ray["initialized"]


def test_a_kept_connection_that_broke_is_replaced(fake_ray, fake_head):
    head = "ray://127.0.0.1:10001"
    connect.connect_ray(head)
    connect.release()
    fake_ray["client"] = False  # Ray no longer counts the client as connected
    assert connect.connect_ray(head) == "client"
    assert fake_head["init"] == 2 and fake_ray["shutdowns"] == 1
    connect.disconnect()
    assert connect.kept_address() is None and fake_ray["shutdowns"] == 2

"""Free local ports and polling for a condition: how tests wait on processes and servers, never on
a fixed sleep."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (never Redis's 6379)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert port != 6379
    return port


def wait_until(predicate, timeout: float = 60, step: float = 0.2, what: str = "condition not reached"):
    """The predicate's first true value, polled every `step` s; AssertionError naming `what` and
    the last value after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what} within {timeout:.0f} s (last: {last!r})")

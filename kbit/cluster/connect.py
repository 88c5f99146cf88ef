"""Connecting this process to Ray: an embedded local cluster, a `ray://` client, or a cluster address.

A Ray Client connect fails now and then (the head's proxy forks a server process per client: on a
head without GRPC_ENABLE_FORK_SUPPORT=false that process often dies at once, ray-project/ray#63202,
and on a loaded head it can miss the proxy's 30 s deadline), so it is retried a few times with a
growing pause; a port nobody listens on fails fast with one clear message instead of Ray's own
half-minute of retries.

A client connection is kept once made: `release` (what `RayService.close` calls) leaves it open,
and the process's next connect to the same address reuses it, because each connect costs a server
process on the head (3-5 s on an idle 2-core head, ~45 s on a loaded one, and a failed try more).
A connect to another address, or to an embedded Ray, closes it first; `disconnect` closes it for
good (Ray's own exit hook does at interpreter exit).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from urllib.parse import urlparse

import ray

from kbit import settings
from kbit.errors import ClusterUnreachable
from kbit.service.retry import transient

NAMESPACE = settings.RAY_NAMESPACE
_kept_address: str | None = None  # the ray:// address of this process's open client connection
# Tries of a client connect, and the time they may take together: one failed try can itself take
# ~45 s (the proxy's 30 s wait for the per-client server, plus its start), so the budget is counted
# in tries, with the time bound only a backstop.
CONNECT_ATTEMPTS = 4
CONNECT_SECONDS = 240
FIRST_WAIT_S = 0.5


def _unreachable(address: str, reason: str) -> ClusterUnreachable:
    return ClusterUnreachable(
        f"cannot reach the Ray cluster at {address}: {reason}. Check that the head is running and its client "
        "port is open (e.g. `kbit up`, or `docker compose up` on the head), or leave out --address / "
        "KBIT_RAY_ADDRESS to run embedded on this machine."
    )


@contextlib.contextmanager
def _quiet_token_auth():
    """Ray logs a warning each time it switches token auth on (every embedded start); for a kbit
    user that is noise: the token stays on this machine (~/.ray/auth_token)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _use_token_auth_if_available() -> None:
    """Send the Ray auth token when this machine has one (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token), as `ray start` does: a head with token auth rejects clients without it."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    with _quiet_token_auth():
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _tcp_check(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


class _NoAnswer(Exception):
    """One failed Ray client connect (retried; its text is the reason shown at the end)."""


def _reason(exc: BaseException) -> str:
    """The first line of a Ray error and, when it has more, its last: Ray's "Initialization failure
    from server:" is followed by the proxy's whole traceback, whose last line says what failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def _client_connect(address: str, host: str, port: int, log_level: int, quiet: bool) -> None:
    problem = _tcp_check(host, port, timeout=3.0)
    if problem is not None:
        raise _NoAnswer(problem)
    _use_token_auth_if_available()
    try:
        ray.init(address, namespace=NAMESPACE, logging_level=log_level, log_to_driver=not quiet)
    except (ConnectionError, RuntimeError) as exc:
        if ray.is_initialized():
            ray.shutdown()
        raise _NoAnswer(_reason(exc)) from None


def connect_ray(address: str | None = None, *, attempts: int = CONNECT_ATTEMPTS, num_cpus: int | None = None, quiet: bool = True):
    """Connect (or reuse this process's connection) and return the address kind:
    'embedded' (address None/'local': a local Ray in this process), 'client' (ray://HOST:PORT),
    or 'driver' (a cluster address such as 'auto' or HOST:GCS_PORT, from a node of that cluster)."""
    global _kept_address
    if ray.is_initialized():
        if _kept_address is None or (_kept_address == address and ray.util.client.ray.is_connected()):
            return "client" if ray.util.client.ray.is_connected() else "driver"
        disconnect()  # a kept client connection to another address, or one that broke
    _kept_address = None
    log_level = logging.WARNING if quiet else logging.INFO
    if not address or address == "local":
        with _quiet_token_auth():
            ray.init(address="local", namespace=NAMESPACE, num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=not quiet, logging_level=log_level, configure_logging=True)
        return "embedded"
    if address.startswith("ray://"):
        parsed = urlparse(address)
        if not parsed.hostname or not parsed.port:
            raise ClusterUnreachable(f"{address!r} is not a Ray client address; use ray://HOST:PORT (e.g. ray://head:10001)")
        try:
            # A connect fails now and then (the per-client server still starting): try again.
            for attempt in transient((_NoAnswer,), seconds=CONNECT_SECONDS, first_wait=FIRST_WAIT_S,
                                     attempts=attempts):
                with attempt:
                    _client_connect(address, parsed.hostname, parsed.port, log_level, quiet)
        except _NoAnswer as exc:
            raise _unreachable(address, str(exc)) from None
        _kept_address = address
        return "client"
    _use_token_auth_if_available()
    extra = {}
    if address.split(":")[0] in ("127.0.0.1", "localhost"):
        # A head on loopback: this driver is on that node too (else Ray looks for it on the LAN address).
        extra["_node_ip_address"] = "127.0.0.1"
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level=log_level, log_to_driver=not quiet, **extra)
    except (ConnectionError, RuntimeError) as exc:
        raise _unreachable(address, _reason(exc)) from None
    return "driver"


def resolve_address(cli_address: str | None, home_service_address: str | None = None) -> str | None:
    """--address, else $KBIT_RAY_ADDRESS, else the local service `kbit up` started, else None (embedded)."""
    return cli_address or settings.ray_address() or home_service_address or None


def release() -> None:
    """Done with Ray for now: a client connection stays open for the next connect to its address;
    an embedded Ray or a driver connection is shut down."""
    if _kept_address is None or not ray.util.client.ray.is_connected():
        disconnect()


def kept_address() -> str | None:
    """The ray:// address of the client connection kept open, if any."""
    return _kept_address if ray.is_initialized() else None


def disconnect() -> None:
    """Close this process's Ray connection (a kept client connection too), or stop its embedded Ray."""
    global _kept_address
    _kept_address = None
    if ray.is_initialized():
        ray.shutdown()

"""The client API: the service's operations, either through the scheduler actor on a Ray cluster
(`RayService`) or straight on the database from this process (`LocalService`, for reading and
cancelling when no cluster is needed).

    with RayService("ray://head:10001") as svc:           # or RayService(None): embedded
        reply = svc.call("submit", spec=sweep.spec(), team="nlp", token=token)
        final = wait_for_sweep(svc, reply["sweep_id"], on_update=print)
"""

from __future__ import annotations

import re
import time

from kbit.cluster import service
from kbit.cluster.connect import connect_ray, disconnect
from kbit.db import connect, errors, resolve_url

_ERRORS = {
    name: getattr(errors, name)
    for name in ("DatabaseError", "DatabaseUnreachable", "AuthError", "NotFound", "PermissionDenied", "Conflict")
}
TERMINAL = ("done", "failed", "cancelled", "cached")
CALL_ATTEMPTS = 5


class SchedulerUnavailable(RuntimeError):
    """The scheduler actor could not be started or reached on the cluster."""


def raise_reply_error(reply: dict):
    exc_type = _ERRORS.get(reply["error"], ValueError)
    raise exc_type(reply["message"])


class LocalService:
    """The operations on the database this process can open itself."""

    mode = "local"

    def __init__(self, db_url: str | None = None):
        self.engine = connect(db_url)

    def call(self, operation: str, **kwargs):
        return service.OPERATIONS[operation](self.engine, **kwargs)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RayService:
    """The operations through the scheduler actor, starting it if the cluster has none.

    address None: an embedded local Ray in this process, with this process's database
    (KBIT_DATABASE_URL or SQLite under KBIT_HOME). 'ray://HOST:PORT': a Ray client connection; the
    scheduler uses the cluster's database unless KBIT_DATABASE_URL is set here.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        db_url: str | None = None,
        evaluate="workers",
        scheduler_options: dict | None = None,
        num_cpus: int | None = None,
        scheduler_name: str | None = None,
    ):
        from kbit.cluster.actor import get_or_create_scheduler, service_env

        self.address = address
        self.mode = connect_ray(address, num_cpus=num_cpus)
        if self.mode == "embedded":
            # Fail here, in one line, when the embedded database cannot be opened.
            db_url = resolve_url(db_url)
            connect(db_url).dispose()
        try:
            self.actor, self.info = get_or_create_scheduler(
                db_url=db_url,
                evaluate=evaluate,
                options=scheduler_options,
                env=service_env() if self.mode == "embedded" else None,
                **({"name": scheduler_name} if scheduler_name else {}),
            )
        except Exception as exc:
            disconnect()
            raise SchedulerUnavailable(_explain_actor_error(exc)) from None

    def call(self, operation: str, **kwargs):
        """One operation on the scheduler. Every operation is idempotent (submit included), so a call
        that meets the actor while Ray restarts it (its node died; max_restarts) is sent again."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        for attempt in range(CALL_ATTEMPTS):
            try:
                reply = ray.get(self.actor.call.remote(operation, kwargs))
                break
            except (ActorUnavailableError, RayActorError) as exc:
                if attempt == CALL_ATTEMPTS - 1:
                    raise SchedulerUnavailable(
                        f"the kbit scheduler did not answer {operation!r} after {CALL_ATTEMPTS} tries "
                        f"({type(exc).__name__}); check the head's logs (`ray logs` or /tmp/ray/session_latest/logs)"
                    ) from None
                time.sleep(min(2.0 * (attempt + 1), 10.0))
        if "error" in reply:
            raise_reply_error(reply)
        return reply["ok"]

    def close(self) -> None:
        disconnect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _explain_actor_error(exc: BaseException) -> str:
    text = str(exc)
    for name in _ERRORS:
        match = re.search(rf"{name}: (.+)", text)
        if match:
            return match.group(1).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (
        "the kbit scheduler could not start on the cluster: "
        + (lines[-1].strip() if lines else type(exc).__name__)
        + ". Check the head's logs (`ray logs` or /tmp/ray/session_latest/logs)."
    )


def is_finished(progress: dict) -> bool:
    return progress["queued"] == 0 and progress["running"] == 0


def wait_for_sweep(svc, sweep_id: int, on_update=None, poll_s: float = 1.0, timeout_s: float | None = None) -> dict:
    """Poll a sweep's progress until no run is queued or running; return the final counts."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        progress = svc.call("progress", sweep_id=sweep_id)
        if on_update:
            on_update(progress)
        if is_finished(progress):
            return progress
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep_id} still has runs in flight after {timeout_s:.0f} s: {progress}")
        time.sleep(poll_s)

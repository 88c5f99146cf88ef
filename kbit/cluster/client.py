"""The client API on a Ray cluster: `RayService`, the operations of `kbit.service.api.ServiceAPI`,
each answered by the scheduler actor.

    with RayService("ray://head:10001") as svc:           # or RayService(None): embedded
        reply = svc.submit(sweep.spec(), team="nlp", token=token)
        svc.progress(reply["sweep_id"])

A user error raised on the actor (`kbit.errors`) is re-raised here as the same class with
its own message; Ray's wrapper (and its remote traceback) is dropped, so the CLI shows one line.
"""

from __future__ import annotations

from kbit import settings
from kbit.cluster.connect import connect_ray, disconnect, release
from kbit.db import connect, resolve_url
from kbit.errors import KbitError, SchedulerUnavailable
from kbit.service.retry import transient

CALL_ATTEMPTS = 5


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
        from kbit.cluster.actor import get_or_create_scheduler

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
                env=settings.forwarded_env() if self.mode == "embedded" else None,
                **({"name": scheduler_name} if scheduler_name else {}),
            )
        except Exception as exc:
            disconnect()
            cause = user_error(exc)
            if cause is not None:
                raise cause from None
            raise SchedulerUnavailable(_explain_actor_error(exc)) from None

    # -- the operations (kbit.service.api.ServiceAPI's signatures) ------------------------------

    def submit(self, spec: dict, team: str, token: str, submitter: str | None = None) -> dict:
        return self._call("submit", spec, team, token, submitter)

    def cancel(self, sweep_id: int, team: str, token: str) -> dict:
        return self._call("cancel", sweep_id, team, token)

    def progress(self, sweep_id: int) -> dict:
        return self._call("progress", sweep_id)

    def sweeps(self, team: str | None = None) -> list[dict]:
        return self._call("sweeps", team)

    def results(self, sweep_id: int | None = None) -> list[dict]:
        return self._call("results", sweep_id)

    def failures(self, sweep_id: int, limit: int = 20) -> list[dict]:
        return self._call("failures", sweep_id, limit)

    def workers(self) -> list[dict]:
        """The cluster's worker actors (kbit.cluster.pool.WorkerPool.describe)."""
        return self._call("workers")

    def _call(self, method: str, *args):
        """One actor method. Every operation is idempotent (submit included), so a call that meets
        the actor while Ray restarts it (its node died; max_restarts) is sent again."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        try:
            for attempt in transient((ActorUnavailableError, RayActorError), seconds=60, first_wait=1.0,
                                     attempts=CALL_ATTEMPTS):
                with attempt:
                    return ray.get(getattr(self.actor, method).remote(*args))
        except RayTaskError as exc:
            cause = user_error(exc)
            if cause is not None:
                raise cause from None
            raise
        except (ActorUnavailableError, RayActorError) as exc:
            raise SchedulerUnavailable(
                f"the kbit scheduler did not answer {method!r} after {CALL_ATTEMPTS} tries "
                f"({type(exc).__name__}); check the head's logs (`ray logs` or /tmp/ray/session_latest/logs)"
            ) from None

    def close(self) -> None:
        """Done: an embedded Ray stops; a Ray client connection stays open for the next RayService
        to the same address (`kbit.cluster.connect.release`)."""
        release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def user_error(exc: BaseException) -> KbitError | None:
    """The KbitError a Ray error carries (a method's own, or the actor constructor's), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, KbitError):
            return cause
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
    return None


def _explain_actor_error(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return (
        "the kbit scheduler could not start on the cluster: "
        + (lines[-1].strip() if lines else type(exc).__name__)
        + ". Check the head's logs (`ray logs` or /tmp/ray/session_latest/logs)."
    )

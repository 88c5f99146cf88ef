"""The service's operations, declared once: `ServiceAPI`.

Five things speak this API, and `tests/service/test_service_api.py` checks every one of them against
this protocol, parameter for parameter (names, order, defaults):

- `kbit.service.operations.Operations`: the operations themselves, on one database;
- `kbit.cluster.actor.SchedulerActor`: the same methods on the scheduler actor;
- `kbit.cluster.client.RayService`: the client of that actor (a Ray client connection);
- `kbit.service.gateway`: the HTTP routes of the submit gateway (checked through its OpenAPI
  description: a route's `operationId` is the operation's name, its path, query and body fields
  and its bearer token are the parameters);
- `kbit.service.gateway_client.HttpService`: the client of those routes.

To add an operation, declare it here first; the test then names every place still missing it.
Anything else an implementation offers (`RayService.workers`, `Operations.open`) is declared
beside the test as that implementation's own.
"""

from __future__ import annotations

from typing import Protocol


class ServiceAPI(Protocol):
    """submit, cancel, progress, sweeps, results, failures: what a team can ask of kbit.

    User errors are `kbit.errors` classes, raised as the same class by every implementation."""

    def submit(self, spec: dict, team: str, token: str, submitter: str | None = None) -> dict:
        """Queue a sweep (its plain `Sweep.spec()`) for `team`, whose token it must carry; the reply
        holds sweep_id, name, team and the run counts. Idempotent while the same sweep is active."""

    def cancel(self, sweep_id: int, team: str, token: str) -> dict:
        """Cancel the queued and running runs of one of the team's sweeps; its progress after."""

    def progress(self, sweep_id: int) -> dict:
        """Run counts by state, the total, and eta_s."""

    def sweeps(self, team: str | None = None) -> list[dict]:
        """The sweeps (of one team), newest first, with their counts."""

    def results(self, sweep_id: int | None = None) -> list[dict]:
        """One flat row per run (of one sweep)."""

    def failures(self, sweep_id: int, limit: int = 20) -> list[dict]:
        """The failed runs of a sweep with their errors, at most `limit`."""


OPERATIONS: tuple[str, ...] = tuple(
    name for name, value in vars(ServiceAPI).items() if callable(value) and not name.startswith("_")
)
WRITES = frozenset({"submit", "cancel"})  # the operations that change something and carry a token

"""One declared API (`kbit.service.api.ServiceAPI`): every implementation and the gateway's HTTP
routes have exactly its operations, with its parameters; an operation added in one place and not
the others fails here, naming the place."""

from __future__ import annotations

import inspect

import pytest

from kbit.cluster.actor import SchedulerActor
from kbit.cluster.client import RayService
from kbit.service.api import OPERATIONS, WRITES, ServiceAPI
from kbit.service.gateway import make_app
from kbit.service.gateway_client import HttpService
from kbit.service.operations import Operations

# What each implementation offers beside the API (its own life cycle, the cluster's own views).
IMPLEMENTATIONS = {
    "Operations": (Operations, {"open", "close"}),
    "SchedulerActor": (SchedulerActor.__ray_actor_class__, {"ping", "workers", "stop", "shutdown"}),
    "RayService": (RayService, {"workers", "close"}),
    "HttpService": (HttpService, {"close"}),
}


def methods(cls) -> set[str]:
    return {name for name, value in inspect.getmembers(cls) if callable(value) and not name.startswith("_")}


def signature(fn) -> inspect.Signature:
    """Its signature, less the tracing context Ray adds to an actor's methods."""
    sig = inspect.signature(fn)
    return sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "_ray_trace_ctx"])


def signature_problems(cls, extras: set[str]) -> list[str]:
    """How `cls` differs from ServiceAPI: operations missing, methods the API does not declare,
    and every parameter (name, kind, default, annotation) or return annotation that differs."""
    problems = [f"missing {name}" for name in OPERATIONS if name not in methods(cls)]
    problems += [f"{name} is not in ServiceAPI" for name in sorted(methods(cls) - set(OPERATIONS) - extras)]
    for name in OPERATIONS:
        if name in methods(cls):
            declared, actual = signature(getattr(ServiceAPI, name)), signature(getattr(cls, name))
            if declared != actual:
                problems.append(f"{name}{actual} is not {name}{declared}")
    return problems


def http_parameters(described: dict) -> dict[str, set[str]]:
    """operationId -> its parameters as the API names them: path and query parameters, the body's
    fields, and `token` for a route that takes the bearer token."""
    schemas = described["components"]["schemas"]
    found = {}
    for path in described["paths"].values():
        for operation in path.values():
            names = {p["name"] for p in operation.get("parameters", [])}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                names |= set(schemas[body["$ref"].rsplit("/", 1)[1]]["properties"])
            if operation.get("security"):
                names.add("token")
            assert operation["operationId"] not in found, f"two routes for {operation['operationId']}"
            found[operation["operationId"]] = names
    return found


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_every_implementation_has_the_declared_operations_and_signatures(name):
    cls, extras = IMPLEMENTATIONS[name]
    assert signature_problems(cls, extras) == []


def test_the_http_routes_are_the_declared_operations_with_their_parameters():
    routes = http_parameters(make_app(Operations(engine=None)).openapi())
    assert set(routes) == set(OPERATIONS)
    for name in OPERATIONS:
        declared = set(inspect.signature(getattr(ServiceAPI, name)).parameters) - {"self"}
        assert routes[name] == declared, name
        assert ("token" in routes[name]) == (name in WRITES), name


def test_an_operation_added_in_one_place_only_is_found():
    class Drifted(HttpService):
        def pause(self, sweep_id: int) -> dict:  # not declared
            return {}

        def failures(self, sweep_id: int, limit: int = 50) -> list[dict]:  # another default
            return []

    assert signature_problems(Drifted, {"close"}) == [
        "pause is not in ServiceAPI",
        "failures(self, sweep_id: 'int', limit: 'int' = 50) -> 'list[dict]' is not "
        "failures(self, sweep_id: 'int', limit: 'int' = 20) -> 'list[dict]'",
    ]

    class Missing:
        def progress(self, sweep_id: int) -> dict:
            return {}

    assert signature_problems(Missing, set()) == [f"missing {n}" for n in OPERATIONS if n != "progress"]

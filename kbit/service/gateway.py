"""The submit gateway: the service's operations (`kbit.service.api.ServiceAPI`) over HTTP + JSON,
for teams that must not get the Ray client port (which runs arbitrary code on the cluster; see
docs/security.md). FastAPI routes under uvicorn; the OpenAPI description is at /openapi.json, the
interactive docs at /docs.

It runs no user code: it only calls `Operations` on the database (a sweep is data, validated as
`kbit submit --check` validates it), and the scheduler picks the runs up from the database. Every
call that changes something carries the team's token (`Authorization: Bearer <token>`).

    POST /sweeps                  {"spec": Sweep.spec(), "team": "nlp"}  -> submit's reply
    GET  /sweeps[?team=T]         -> the sweeps
    GET  /sweeps/ID               -> progress
    GET  /sweeps/ID/results       -> one row per run
    GET  /sweeps/ID/failures[?limit=N] -> the failed runs
    POST /sweeps/ID/cancel        {"team": "nlp"} -> progress after the cancel

Each route's OpenAPI operationId is the operation's name. Errors come back as {"error": class name,
"message": one line} with a 4xx status (`STATUS`). What protects the service from a client (the
numbers in `Limits`): a request's headers and body must arrive within `request_timeout_s` of its
first byte (else the connection is closed: a client trickling a byte a second holds nothing for
long); headers are at most `max_header_bytes` and a body `max_body_bytes` (a bad Content-Length
is a 400, read no further); the operations run on at most `workers` threads, and concurrent
requests for the same read share one database call; at most `max_connections` connections are
served at once (beyond, 503); each token may make `write_burst` writes at once, then
`write_per_s` a second (beyond, 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import math
import threading
import time
from http import HTTPStatus
from typing import Any

import anyio
import h11
import uvicorn
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from kbit import __version__, errors
from kbit.service.api import ServiceAPI

log = logging.getLogger("kbit.gateway")
STATUS = {
    errors.AuthError: HTTPStatus.UNAUTHORIZED, errors.PermissionDenied: HTTPStatus.FORBIDDEN,
    errors.NotFound: HTTPStatus.NOT_FOUND, errors.Conflict: HTTPStatus.CONFLICT,
    errors.RateLimited: HTTPStatus.TOO_MANY_REQUESTS,
    errors.DatabaseUnreachable: HTTPStatus.SERVICE_UNAVAILABLE,
}


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one client may take of the gateway (see the module docstring)."""

    max_body_bytes: int = 1_000_000  # a sweep spec is a grid; the sweep-file limit applies to its JSON too
    max_header_bytes: int = 16 * 1024
    request_timeout_s: float = 10.0  # headers and body of one request, from its first byte
    keep_alive_s: int = 5  # an idle kept-alive connection is closed after this
    workers: int = 8  # threads running operations (each holds a database connection meanwhile)
    max_connections: int = 1000
    write_burst: int = 20  # writes (submit, cancel) one token may make at once ...
    write_per_s: float = 1.0  # ... and then per second


class BadRequest(errors.UsageError):
    """A request the gateway cannot read (not JSON, too big, missing a field)."""


# -- the wire types (the OpenAPI description is made from these) -----------------------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # a reply keeps every field the operation returns


class Counts(_Open):
    queued: int
    running: int
    done: int
    cached: int
    failed: int
    cancelled: int
    total: int


class Progress(Counts):
    eta_s: float | None = Field(description="seconds left at the sweep's pace so far; None before a run is done")


class _SweepCounts(Counts):
    sweep_id: int
    name: str
    team: str


class SubmitReply(_SweepCounts, Progress):
    pass


class SweepRow(_SweepCounts):
    status: str
    priority: int
    submitter: str | None = None
    code_version: str | None = None
    created_at: str | None = None
    cancelled_at: str | None = None


class Failure(_Open):
    run_id: int
    model: str
    label: str
    attempts: int
    error_type: str | None = None
    error: str | None = None


class SubmitRequest(BaseModel):
    spec: dict[str, Any] = Field(description="the sweep as `Sweep.spec()` makes it (what a sweep file reads as)")
    team: str = Field(min_length=1)
    submitter: str | None = None


class CancelRequest(BaseModel):
    team: str = Field(min_length=1)


class ErrorReply(BaseModel):
    error: str = Field(description="the kbit.errors class")
    message: str


# -- protection ------------------------------------------------------------------------------------

class TokenBuckets:
    """A token bucket per key (a hashed team token): `burst` at once, refilled at `per_s` a second."""

    def __init__(self, burst: int, per_s: float, max_keys: int = 10_000):
        self.burst, self.per_s, self.max_keys = burst, per_s, max_keys
        self._buckets: dict[bytes, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 when the key may go ahead (one token taken), else the seconds until it may."""
        digest, now = hashlib.sha256(key.encode()).digest(), time.monotonic()
        with self._lock:
            tokens, when = self._buckets.get(digest, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.per_s)
            if len(self._buckets) >= self.max_keys and digest not in self._buckets:
                self._forget_full(now)
            if tokens < 1.0:
                self._buckets[digest] = (tokens, now)
                return (1.0 - tokens) / self.per_s
            self._buckets[digest] = (tokens - 1.0, now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold nothing a new bucket would not)."""
        for key, (tokens, when) in list(self._buckets.items()):
            if tokens + (now - when) * self.per_s >= self.burst:
                del self._buckets[key]


class _RequestGuard:
    """ASGI middleware: a request with more than `max_header_bytes` of headers, or whose
    Content-Length is not a number or says more than `max_bytes`, is answered 400 before its body
    is read; a body sent in chunks stops being read past `max_bytes`. (uvicorn's own header bound
    holds only while headers are incomplete.) Every body is read as JSON, whatever its Content-Type
    says (`curl -d` says a form)."""

    def __init__(self, app, max_bytes: int, max_header_bytes: int):
        self.app, self.max_bytes, self.max_header_bytes = app, max_bytes, max_header_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header_bytes = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        length = dict(headers).get(b"content-length")
        problem = None
        if header_bytes > self.max_header_bytes:
            problem = f"the request's headers are {header_bytes:,} bytes; at most {self.max_header_bytes:,}"
        elif length is not None and not length.strip().isdigit():
            problem = "Content-Length must be a number of bytes"
        elif length is not None and int(length) > self.max_bytes:
            problem = f"the request is {int(length):,} bytes; at most {self.max_bytes:,}"
        if problem:
            response = _error_response(BadRequest(problem))
            response.headers["Connection"] = "close"
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BadRequest(f"the request is over {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited, send)


class _DeadlineH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request: its headers and body must
    arrive within `request_timeout_s` of its first byte (of the connection, for the first), else
    the connection is closed. uvicorn itself bounds only the idle time between requests."""

    request_timeout_s = Limits.request_timeout_s  # set per server by `make_server`

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            self._arm()
        super().data_received(data)
        self._disarm_when_read()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY:  # a pipelined request, half read
            self._arm()

    def connection_lost(self, exc) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._cancel()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._expire)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _disarm_when_read(self) -> None:
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._cancel()

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            log.warning("%s: no whole request within %s s; closing the connection", self.client, self.request_timeout_s)
            self.transport.close()


# -- the app ---------------------------------------------------------------------------------------

def _status(exc: errors.KbitError) -> HTTPStatus:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return HTTPStatus.BAD_REQUEST


def _error_response(exc: errors.KbitError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=_status(exc), headers=headers)


def _validation_error(exc: RequestValidationError) -> errors.KbitError:
    """The first problem pydantic found, in the gateway's words."""
    first = exc.errors()[0]
    loc, kind = tuple(first.get("loc", ())), first.get("type", "")
    if kind == "json_invalid":
        return BadRequest("the request body is not JSON")
    if loc[:2] == ("path", "sweep_id"):
        return errors.NotFound(f"{first.get('input')!r} is not a sweep id")
    if loc == ("body",):
        return BadRequest("the request body must be a JSON object")
    name = ".".join(str(part) for part in loc[1:])
    if kind == "missing":
        return BadRequest(f"the request needs {name!r}")
    return BadRequest(f"the request's {name!r}: {first.get('msg', 'invalid')}")


def make_app(ops: ServiceAPI, limits: Limits = Limits()) -> FastAPI:
    """The gateway's ASGI app over `ops` (an `Operations`, or anything with the ServiceAPI)."""
    app = FastAPI(
        title="kbit submit gateway", version=__version__,
        description="k-bit quantization sweeps: submit, follow and cancel them without the Ray client port.",
        responses={code: {"model": ErrorReply} for code in (400, 401, 403, 404, 409, 429, 503)},
    )
    pool = anyio.CapacityLimiter(limits.workers)
    buckets = TokenBuckets(limits.write_burst, limits.write_per_s)
    bearer = HTTPBearer(auto_error=False, description="the team's token, as `kbit team create` printed it")

    async def call(fn, *args):
        """An operation (blocking: it talks to the database) on the bounded pool."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=pool)

    in_flight: dict[tuple, asyncio.Future] = {}

    async def read(fn, *args):
        """A read: requests for the same read while one runs share its answer (one database call for
        any number of readers of one sweep; nothing is kept after it returns)."""
        key = (fn.__name__, *args)
        if key not in in_flight:
            in_flight[key] = asyncio.ensure_future(call(fn, *args))
            in_flight[key].add_done_callback(lambda _: in_flight.pop(key, None))
        return await asyncio.shield(in_flight[key])

    def write_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        """The bearer token of a write, within its rate (checked before the body is read)."""
        if credentials is None:
            raise errors.AuthError("no token: send `Authorization: Bearer <your team's token>`")
        wait = buckets.take(credentials.credentials)
        if wait:
            raise errors.RateLimited(f"too many writes with this token; retry in {math.ceil(wait)} s", math.ceil(wait))
        return credentials.credentials

    sweep_id_path = Path(description="the sweep's id, as submit returned it")

    @app.post("/sweeps", operation_id="submit", response_model=SubmitReply)
    async def submit(body: SubmitRequest, token: str = Depends(write_token)):
        return await call(ops.submit, body.spec, body.team, token, body.submitter)

    @app.post("/sweeps/{sweep_id}/cancel", operation_id="cancel", response_model=Progress)
    async def cancel(body: CancelRequest, sweep_id: int = sweep_id_path, token: str = Depends(write_token)):
        return await call(ops.cancel, sweep_id, body.team, token)

    @app.get("/sweeps/{sweep_id}", operation_id="progress", response_model=Progress)
    async def progress(sweep_id: int = sweep_id_path):
        return await read(ops.progress, sweep_id)

    @app.get("/sweeps", operation_id="sweeps", response_model=list[SweepRow])
    async def sweeps(team: str | None = Query(None, description="only this team's sweeps")):
        return await read(ops.sweeps, team)

    @app.get("/sweeps/{sweep_id}/results", operation_id="results", response_model=list[dict[str, Any]])
    async def results(sweep_id: int = sweep_id_path):
        return await read(ops.results, sweep_id)

    @app.get("/sweeps/{sweep_id}/failures", operation_id="failures", response_model=list[Failure])
    async def failures(sweep_id: int = sweep_id_path, limit: int = Query(20, ge=1, le=10_000)):
        return await read(ops.failures, sweep_id, limit)

    @app.exception_handler(errors.KbitError)
    async def kbit_error(request: Request, exc: errors.KbitError):
        limited = isinstance(exc, errors.RateLimited)
        return _error_response(exc, {"Retry-After": str(exc.retry_after_s)} if limited else None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.__cause__, errors.KbitError):  # raised while FastAPI read the body (_RequestGuard)
            return _error_response(exc.__cause__)
        if exc.status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED):
            return _error_response(errors.NotFound(f"no such resource: {request.method} {request.url.path}"))
        return _error_response(BadRequest(str(exc.detail)))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):  # a bug: say so, keep serving
        log.error("gateway error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": type(exc).__name__, "message": "internal error"}, status_code=500)

    app.add_middleware(_RequestGuard, max_bytes=limits.max_body_bytes, max_header_bytes=limits.max_header_bytes)
    return app


def make_server(ops: ServiceAPI, host: str = "127.0.0.1", port: int = 8000,
                limits: Limits = Limits()) -> uvicorn.Server:
    """The gateway as a uvicorn server on host:port (port 0: a free one); `.run()` serves until
    interrupted, or set `.should_exit` from another thread."""
    protocol = type("GatewayProtocol", (_DeadlineH11,), {"request_timeout_s": limits.request_timeout_s})
    config = uvicorn.Config(
        make_app(ops, limits), host=host, port=port, http=protocol, lifespan="off",
        timeout_keep_alive=limits.keep_alive_s, h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=limits.max_connections, log_config=None, server_header=False,
    )
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (the free one it took for port 0)."""
    return server.servers[0].sockets[0].getsockname()[1]


def serve(ops: ServiceAPI, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits()) -> None:
    """Serve the gateway until Ctrl-C (what `kbit gateway` runs)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    make_server(ops, host, port, limits).run()


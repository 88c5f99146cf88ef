"""The submit gateway: the service's operations over plain HTTP + JSON, for teams that must not
get the Ray client port (which runs arbitrary code on the cluster; see docs/security.md).

It runs no user code: it only calls `Operations` on the database (a sweep is data, validated as
`kbit submit --check` validates it), and the scheduler picks the runs up from the database. Every
call that changes something carries the team's token (`Authorization: Bearer <token>`).

    POST /sweeps                 {"spec": Sweep.spec(), "team": "nlp"}  -> submit's reply
    GET  /sweeps[?team=T]        -> the sweeps
    GET  /sweeps/ID              -> progress
    GET  /sweeps/ID/results      -> one row per run
    GET  /sweeps/ID/failures     -> the failed runs
    POST /sweeps/ID/cancel       {"team": "nlp"} -> progress after the cancel

Errors come back as {"error": class name, "message": one line} with a 4xx status.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kbit.service.operations import Operations
from kbit.spec import errors

log = logging.getLogger("kbit.gateway")
MAX_BODY_BYTES = 1_000_000  # a sweep spec is a grid; the sweep-file limit applies to its JSON too
STATUS = {
    errors.AuthError: HTTPStatus.UNAUTHORIZED, errors.PermissionDenied: HTTPStatus.FORBIDDEN,
    errors.NotFound: HTTPStatus.NOT_FOUND, errors.Conflict: HTTPStatus.CONFLICT,
    errors.DatabaseUnreachable: HTTPStatus.SERVICE_UNAVAILABLE,
}


class BadRequest(errors.UsageError):
    """A request the gateway cannot read (not JSON, too big, missing a field)."""


def _status(exc: errors.KbitError) -> HTTPStatus:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return HTTPStatus.BAD_REQUEST


class _Handler(BaseHTTPRequestHandler):
    ops: Operations  # set on the subclass `serve` makes
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # through logging, not stderr lines per request
        log.info("%s %s", self.address_string(), fmt % args)

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _answer(self, route) -> None:
        try:
            status, body = HTTPStatus.OK, route()
        except errors.KbitError as exc:
            status, body = _status(exc), {"error": type(exc).__name__, "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bug: say so, keep serving
            log.exception("gateway error")
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(exc).__name__, "message": "internal error"}
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> tuple[list[str], dict]:
        path, _, query = self.path.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        return [p for p in path.split("/") if p], params

    def _token(self) -> str:
        header = self.headers.get("Authorization", "")
        match = re.fullmatch(r"Bearer\s+(\S+)", header.strip())
        if not match:
            raise errors.AuthError("no token: send `Authorization: Bearer <your team's token>`")
        return match.group(1)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"the request is {length:,} bytes; at most {MAX_BODY_BYTES:,}")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    @staticmethod
    def _field(body: dict, name: str, kind=str):
        value = body.get(name)
        if not isinstance(value, kind) or (kind is str and not value):
            raise BadRequest(f"the request needs {name!r} ({kind.__name__})")
        return value

    def _sweep_id(self, text: str) -> int:
        if not text.isdigit():
            raise errors.NotFound(f"{text!r} is not a sweep id")
        return int(text)

    def _get(self):
        parts, params = self._path()
        if parts == ["sweeps"]:
            return self.ops.sweeps(params.get("team"))
        if len(parts) == 2 and parts[0] == "sweeps":
            return self.ops.progress(self._sweep_id(parts[1]))
        if len(parts) == 3 and parts[0] == "sweeps" and parts[2] in ("results", "failures"):
            sweep_id = self._sweep_id(parts[1])
            return self.ops.results(sweep_id) if parts[2] == "results" else self.ops.failures(sweep_id)
        raise errors.NotFound(f"no such resource: GET {self.path}")

    def _post(self):
        parts, _ = self._path()
        body = self._body()
        if parts == ["sweeps"]:
            token = self._token()
            return self.ops.submit(self._field(body, "spec", dict), self._field(body, "team"), token,
                                   body.get("submitter") if isinstance(body.get("submitter"), str) else None)
        if len(parts) == 3 and parts[0] == "sweeps" and parts[2] == "cancel":
            token = self._token()
            return self.ops.cancel(self._sweep_id(parts[1]), self._field(body, "team"), token)
        raise errors.NotFound(f"no such resource: POST {self.path}")


def make_server(ops: Operations, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """The gateway's HTTP server on host:port (not yet serving: call serve_forever)."""
    handler = type("GatewayHandler", (_Handler,), {"ops": ops})
    return ThreadingHTTPServer((host, port), handler)

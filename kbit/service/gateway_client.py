"""The client of the submit gateway (`kbit.service.gateway`): `HttpService`, the operations of
`kbit.service.api.ServiceAPI` over HTTP. `kbit --address http://HOST:PORT` uses it."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from kbit import errors


class HttpService:
    mode = "gateway"

    def __init__(self, address: str, timeout_s: float = 60.0):
        self.address, self.timeout_s = address.rstrip("/"), timeout_s

    def submit(self, spec: dict, team: str, token: str, submitter: str | None = None) -> dict:
        return self._call("POST", "/sweeps", {"spec": spec, "team": team, "submitter": submitter}, token)

    def cancel(self, sweep_id: int, team: str, token: str) -> dict:
        return self._call("POST", f"/sweeps/{int(sweep_id)}/cancel", {"team": team}, token)

    def progress(self, sweep_id: int) -> dict:
        return self._call("GET", f"/sweeps/{int(sweep_id)}")

    def sweeps(self, team: str | None = None) -> list[dict]:
        return self._call("GET", "/sweeps" + (f"?{urllib.parse.urlencode({'team': team})}" if team else ""))

    def results(self, sweep_id: int | None = None) -> list[dict]:
        if sweep_id is None:
            raise errors.UsageError("through the gateway, results are per sweep: pass --sweep ID")
        return self._call("GET", f"/sweeps/{int(sweep_id)}/results")

    def failures(self, sweep_id: int, limit: int = 20) -> list[dict]:
        return self._call("GET", f"/sweeps/{int(sweep_id)}/failures?limit={int(limit)}")

    def _call(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.address + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise errors.ClusterUnreachable(
                f"cannot reach the kbit gateway at {self.address}: {reason}. Check that `kbit gateway` runs there "
                "and the port is reachable (an SSH tunnel, or the private network)"
            ) from None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _error(exc: urllib.error.HTTPError) -> errors.KbitError:
    """The gateway's error as the same kbit.errors class (its message as sent)."""
    try:
        body = json.loads(exc.read())
        name, message = body["error"], body["message"]
    except (ValueError, KeyError, TypeError):
        return errors.KbitError(f"the gateway answered HTTP {exc.code}")
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.KbitError):
        try:
            return cls(message)
        except TypeError:  # a class with other arguments (SweepError): the message says it all
            pass
    return errors.KbitError(message)

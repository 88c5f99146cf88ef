"""The submit gateway over real HTTP (uvicorn on a free port): the service's operations without the
Ray client port, each error one line with its own class, the runs queued for the scheduler in the
database, and a gateway that keeps answering when clients misbehave."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from kbit import errors
from kbit.cli.main import main
from kbit.db import connect, queue, session_scope, teams
from kbit.service import Operations
from kbit.service.api import OPERATIONS
from kbit.service.gateway import Limits, bound_port, make_server
from kbit.service.gateway_client import HttpService
from kbit.sweeps import parse_sweep
from tests.support.net import wait_until

SWEEP = "name: g\nmodels: [m/a]\ngrid: {bits: [4], dtypes: [nf, int], blocksizes: [64]}\ntasks: [x]\n"
QUICK = Limits(request_timeout_s=1.0, keep_alive_s=2)


@contextlib.contextmanager
def running(ops, limits: Limits = QUICK):
    """A gateway over `ops` on a free port in a thread; its uvicorn server."""
    server = make_server(ops, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def address_of(server) -> str:
    return f"http://127.0.0.1:{bound_port(server)}"


@contextlib.contextmanager
def serving(ops, limits: Limits = QUICK):
    """A gateway over `ops` on a free port in a thread; its base URL."""
    with running(ops, limits) as server:
        yield address_of(server)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A database with the schema, made once: each test starts from a copy (migrating takes longest)."""
    path = tmp_path_factory.mktemp("template") / "kbit.db"
    connect(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture
def database(tmp_path, migrated):
    shutil.copy(migrated, tmp_path / "kbit.db")
    engine = connect(f"sqlite:///{tmp_path / 'kbit.db'}")
    with session_scope(engine) as s:
        tokens = {"nlp": teams.create_team(s, "nlp"), "vision": teams.create_team(s, "vision")}
    yield engine, tokens
    engine.dispose()


@pytest.fixture
def gateway(database):
    engine, tokens = database
    with serving(Operations(engine)) as address:
        yield address, engine, tokens


def spec(text=SWEEP):
    return parse_sweep(text, family_members=lambda f: []).spec()


def raw(address: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection; everything the gateway answers until it closes."""
    host, port = address.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def get_ok(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200


def test_a_sweep_submitted_over_http_is_queued_for_the_scheduler(gateway):
    address, engine, tokens = gateway
    client = HttpService(address)
    reply = client.submit(spec(), "nlp", tokens["nlp"], "alice")
    assert (reply["name"], reply["team"], reply["total"], reply["queued"]) == ("g", "nlp", 3, 3)
    assert client.submit(spec(), "nlp", tokens["nlp"])["sweep_id"] == reply["sweep_id"]  # idempotent
    assert client.progress(reply["sweep_id"])["queued"] == 3
    [row] = client.sweeps("nlp")
    assert (row["sweep_id"], row["submitter"], row["queued"]) == (reply["sweep_id"], "alice", 3)
    assert client.sweeps("vision") == []
    with session_scope(engine) as s:  # what the scheduler does next: the runs are in the queue
        assert len(queue.claim_runs(s, worker="w", limit=10)) == 3
    assert {r["status"] for r in client.results(reply["sweep_id"])} == {"running"}


def test_failures_come_back_with_their_errors_up_to_the_limit(gateway):
    address, engine, tokens = gateway
    client = HttpService(address)
    sweep_id = client.submit(spec(), "nlp", tokens["nlp"])["sweep_id"]
    with session_scope(engine) as s:
        for run in queue.claim_runs(s, worker="w", limit=10):
            queue.fail_run(s, run.run_id, error="out of memory", worker="w", retryable=False, error_type="oom")
    assert [f["error"] for f in client.failures(sweep_id)] == ["out of memory"] * 3
    assert len(client.failures(sweep_id, limit=2)) == 2 and client.progress(sweep_id)["failed"] == 3


def test_every_refusal_is_its_own_error_class_with_one_line(gateway):
    address, _, tokens = gateway
    client = HttpService(address)
    with pytest.raises(errors.AuthError, match="wrong token"):
        client.submit(spec(), "nlp", "not-the-token")
    reply = client.submit(spec(), "nlp", tokens["nlp"])
    with pytest.raises(errors.PermissionDenied, match="belongs to team 'nlp'"):
        client.cancel(reply["sweep_id"], "vision", tokens["vision"])
    assert client.cancel(reply["sweep_id"], "nlp", tokens["nlp"])["cancelled"] == 3
    with pytest.raises(errors.NotFound, match="sweep 999 does not exist"):
        client.progress(999)
    bad = dict(spec(), eval=dict(spec()["eval"], limit=1.0))  # a client that skipped `kbit submit --check`
    with pytest.raises(errors.KbitError, match="limit"):
        client.submit(bad, "nlp", tokens["nlp"])


@pytest.mark.parametrize("method, path, body, headers, status, words", [
    ("POST", "/sweeps", b"{}", {}, 401, "no token"),
    ("POST", "/sweeps", b"not json", {"Authorization": "Bearer x"}, 400, "not JSON"),
    ("POST", "/sweeps", b"[1, 2]", {"Authorization": "Bearer x"}, 400, "must be a JSON object"),
    ("POST", "/sweeps", b'{"team": "nlp"}', {"Authorization": "Bearer x"}, 400, "needs 'spec'"),
    ("POST", "/sweeps", b'{"spec": [], "team": "nlp"}', {"Authorization": "Bearer x"}, 400, "'spec'"),
    ("POST", "/sweeps/1/cancel", b"{}", {"Authorization": "Bearer x"}, 400, "needs 'team'"),
    ("POST", "/nowhere", b"{}", {}, 404, "no such resource: POST /nowhere"),
    ("GET", "/sweeps/abc", None, {}, 404, "'abc' is not a sweep id"),
    ("GET", "/sweeps/1/cancel", None, {}, 404, "no such resource"),
])
def test_bad_requests_get_a_clear_status_and_message(gateway, method, path, body, headers, status, words):
    address, *_ = gateway
    request = urllib.request.Request(address + path, data=body, method=method, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == status and words in json.loads(info.value.read())["message"]


def test_a_huge_request_is_refused_unread(gateway):
    address, *_ = gateway
    request = urllib.request.Request(address + "/sweeps", data=b"{}", method="POST",
                                     headers={"Content-Length": "50000000", "Authorization": "Bearer x"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400 and "at most 1,000,000" in json.loads(info.value.read())["message"]


@pytest.mark.parametrize("length", [b"-5", b"abc", b"1e3"])
def test_a_negative_or_non_numeric_content_length_is_refused_at_once(database, length):
    engine, _ = database
    with serving(Operations(engine), Limits(request_timeout_s=120)) as address:  # waiting would outlast `raw`
        answer = raw(address, b"POST /sweeps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
                              b"Content-Length: " + length + b"\r\n\r\n{}", timeout=30)
    assert 400 <= status_of(answer) < 500


def test_oversized_headers_and_an_oversized_chunked_body_are_refused(gateway):
    address, *_ = gateway
    answer = raw(address, b"GET /sweeps HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert status_of(answer) == 400 and b"at most 16,384" in answer
    chunk = b"a" * 600_000
    body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n"
    answer = raw(address, b"POST /sweeps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status_of(answer) == 400 and b"over 1,000,000 bytes" in answer


class BrokenOperations(Operations):
    def progress(self, sweep_id: int) -> dict:
        raise RuntimeError("a bug")


def test_a_bug_is_a_500_that_says_so_and_the_gateway_keeps_serving(database):
    engine, _ = database
    with serving(BrokenOperations(engine)) as address:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(address + "/sweeps/1", timeout=5)
        assert info.value.code == 500
        assert json.loads(info.value.read()) == {"error": "RuntimeError", "message": "internal error"}
        get_ok(address + "/sweeps")


def test_a_url_encoded_team_name_is_decoded(gateway):
    address, engine, _ = gateway
    with session_scope(engine) as s:
        token = teams.create_team(s, "ml.ops-1")
    client = HttpService(address)
    sweep_id = client.submit(spec(), "ml.ops-1", token)["sweep_id"]
    assert [s["sweep_id"] for s in client.sweeps("ml.ops-1")] == [sweep_id]
    with urllib.request.urlopen(address + "/sweeps?team=ml%2Eops%2D1", timeout=5) as response:  # every byte quoted
        assert [s["team"] for s in json.loads(response.read())] == ["ml.ops-1"]
    assert client.sweeps("no such team & more") == []


def test_the_openapi_description_names_every_operation(gateway):
    address, *_ = gateway
    with urllib.request.urlopen(address + "/openapi.json", timeout=5) as response:
        described = json.loads(response.read())
    ids = {op["operationId"] for path in described["paths"].values() for op in path.values()}
    assert ids == set(OPERATIONS) and "HTTPBearer" in described["components"]["securitySchemes"]
    with urllib.request.urlopen(address + "/docs", timeout=5) as response:
        assert b"openapi.json" in response.read()


def test_writes_are_rate_limited_per_token_with_retry_after(database):
    engine, tokens = database
    with serving(Operations(engine), Limits(write_burst=2, write_per_s=0.2)) as address:
        client = HttpService(address)
        for _ in range(2):
            client.submit(spec(), "nlp", tokens["nlp"])
        request = urllib.request.Request(
            address + "/sweeps", method="POST", data=json.dumps({"spec": spec(), "team": "nlp"}).encode(),
            headers={"Authorization": f"Bearer {tokens['nlp']}", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 429 and 1 <= int(info.value.headers["Retry-After"]) <= 5
        with pytest.raises(errors.RateLimited, match="too many writes with this token; retry in"):
            client.cancel(1, "nlp", tokens["nlp"])
        assert client.submit(spec(), "vision", tokens["vision"])["team"] == "vision"  # another token is not held up
        assert client.progress(1)["queued"] == 3  # reads are not limited


SLOW_CLIENTS = {  # what is sent at once, then what is sent a byte a second
    "headers": (b"", b"GET /sweeps HTTP/1.1\r\nHost: x\r\n\r\n"),
    "body": (b"POST /sweeps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nContent-Length: 20\r\n\r\n",
             b'{"team": "nlp", ...}'),
}


@pytest.mark.slow
def test_clients_sending_a_byte_a_second_are_cut_off_and_hold_up_no_one(database):
    engine, _ = database
    limits = Limits(request_timeout_s=3.0, keep_alive_s=2)
    outcome, trickling = {}, {name: threading.Event() for name in SLOW_CLIENTS}

    def slow_client(name):
        head, trickle = SLOW_CLIENTS[name]
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(head)
            start = time.monotonic()
            try:
                for byte in trickle:
                    sock.sendall(bytes([byte]))
                    trickling[name].set()
                    time.sleep(1.0)
                answer = sock.recv(100)
            except OSError as exc:  # reset by the gateway
                answer = exc
            outcome[name] = (answer, time.monotonic() - start, time.monotonic())

    with serving(Operations(engine), limits) as address:
        host, port = address.removeprefix("http://").split(":")
        slow = [threading.Thread(target=slow_client, args=(name,)) for name in SLOW_CLIENTS]
        for thread in slow:
            thread.start()
        for event in trickling.values():
            assert event.wait(30)
        get_ok(address + "/sweeps")
        answered_at = time.monotonic()
        for thread in slow:
            thread.join(timeout=60)
    for name, (answer, after_s, cut_at) in outcome.items():
        assert answered_at < cut_at, name  # the other client was answered while this one still trickled
        # cut off at the request deadline: a next byte finds the connection closed, long before the
        # trickle (20 bytes or more, a second each) would have ended
        assert isinstance(answer, OSError) or answer == b"", (name, answer)
        assert after_s < limits.request_timeout_s + 10, (name, after_s)


def test_at_most_max_connections_are_served_at_once(database):
    engine, _ = database
    with running(Operations(engine), Limits(max_connections=2)) as server:
        address = address_of(server)
        host, port = address.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))), socket.create_connection((host, int(port))):
            wait_until(lambda: len(server.server_state.connections) == 2, step=0.01, what="the gateway holds both connections")
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(address + "/sweeps", timeout=30)
            assert info.value.code == 503
        wait_until(lambda: not server.server_state.connections, step=0.01, what="the gateway saw both connections close")
        get_ok(address + "/sweeps")  # served again once those closed


class SlowOperations(Operations):
    """Operations whose `sweeps` takes 0.2 s, counting how many run at once."""

    def __init__(self, engine):
        super().__init__(engine)
        self.running = self.most = 0
        self.lock = threading.Lock()

    def sweeps(self, team: str | None = None) -> list[dict]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        return super().sweeps(team)


def test_operations_run_on_a_bounded_pool_and_one_read_is_shared(database):
    engine, _ = database
    ops = SlowOperations(engine)
    with serving(ops, Limits(workers=2)) as address, ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda i: HttpService(address).sweeps(f"team{i}"), range(8))) == [[]] * 8
        assert ops.most == 2  # eight different reads, two at a time
        ops.most = 0
        assert list(pool.map(lambda i: HttpService(address).sweeps("nlp"), range(8))) == [[]] * 8
        assert ops.most == 1  # eight times the same read at once: one call (or a few, as they arrive)


class GatewayCommand:
    """`kbit gateway --port 0` as its own process (as docker compose runs it), on its own database."""

    def __init__(self, folder):
        engine = connect(f"sqlite:///{folder / 'kbit.db'}")
        with session_scope(engine) as s:
            self.token = teams.create_team(s, "nlp")
        engine.dispose()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kbit.cli.main", "gateway", "--host", "127.0.0.1", "--port", "0",
             "--database-url", f"sqlite:///{folder / 'kbit.db'}"], stderr=subprocess.PIPE, text=True)
        self.address = None

    def url(self) -> str:
        """Its address, from the line uvicorn logs once it listens."""
        for line in self.process.stderr if self.address is None else ():
            match = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if match:
                self.address = match.group(1)
                threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained
                break
        assert self.address, f"kbit gateway exited with {self.process.wait()}"
        return self.address


@pytest.fixture(scope="module", autouse=True)
def gateway_command(tmp_path_factory):
    """Started with the module's first test: it boots (imports) while the others run."""
    command = GatewayCommand(tmp_path_factory.mktemp("command"))
    yield command
    command.process.terminate()
    command.process.wait(timeout=10)


def test_the_gateway_command_serves_200_concurrent_readers(gateway_command):
    address = gateway_command.url()
    sweep_id = HttpService(address).submit(spec(), "nlp", gateway_command.token)["sweep_id"]
    start = threading.Barrier(200)

    def reader(_):
        start.wait()
        with urllib.request.urlopen(f"{address}/sweeps/{sweep_id}/results", timeout=60) as response:
            return response.status, len(json.loads(response.read()))

    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(reader, range(200))) == [(200, 3)] * 200


class HeldResults(Operations):
    """Operations whose `results` waits until `release` is set."""

    def __init__(self, engine):
        super().__init__(engine)
        self.release = threading.Event()

    def results(self, sweep_id: int | None = None) -> list[dict]:
        assert self.release.wait(60), "the test never released the held reads"
        return super().results(sweep_id)


def test_200_readers_held_in_one_read_leave_the_pool_free_for_another_client(database):
    """Unshared, the held reads would fill both pool threads and the status request would wait
    behind the other 198: it times out instead of being answered."""
    engine, tokens = database
    ops = HeldResults(engine)
    with running(ops, Limits(workers=2)) as server:
        address = address_of(server)
        sweep_id = HttpService(address).submit(spec(), "nlp", tokens["nlp"])["sweep_id"]

        def reader(_):
            with urllib.request.urlopen(f"{address}/sweeps/{sweep_id}/results", timeout=60) as response:
                return response.status, len(json.loads(response.read()))

        with ThreadPoolExecutor(200) as pool:
            answers = [pool.submit(reader, i) for i in range(200)]
            try:
                wait_until(lambda: len(server.server_state.tasks) >= 200, step=0.01, what="every reader's request is in the app")
                with urllib.request.urlopen(f"{address}/sweeps/{sweep_id}", timeout=10) as response:
                    assert json.loads(response.read())["queued"] == 3
                assert not any(a.done() for a in answers)  # answered while all 200 readers wait
            finally:
                ops.release.set()
            assert [a.result() for a in answers] == [(200, 3)] * 200


def test_the_cli_submits_and_follows_through_the_gateway(gateway, tmp_path, monkeypatch, capsys):
    address, _, tokens = gateway
    path = tmp_path / "g.yaml"
    path.write_text(SWEEP)
    monkeypatch.setenv("KBIT_TOKEN", tokens["nlp"])
    assert main(["submit", str(path), "--team", "nlp", "--address", address]) == 0
    out = capsys.readouterr().out
    assert "3 to run, through http://" in out
    assert main(["status", "1", "--address", address]) == 0
    assert "3 queued" in capsys.readouterr().out
    assert main(["status", "7", "--address", address]) == 1
    assert capsys.readouterr().err == "kbit status: error: sweep 7 does not exist; `kbit status` lists the sweeps\n"
    monkeypatch.setenv("KBIT_TOKEN", "wrong")
    assert main(["cancel", "1", "--team", "nlp", "--address", address]) == 1
    assert capsys.readouterr().err == ("kbit cancel: error: wrong token for team 'nlp'; use the token printed when "
                                       "the team was created\n")

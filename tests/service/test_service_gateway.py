"""The submit gateway over real HTTP: the service's operations without the Ray client port, each
error one line with its own class, and the runs queued for the scheduler in the database."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from kbit.cli.main import main
from kbit.db import connect, queue, session_scope, teams
from kbit.service import Operations
from kbit.service.gateway import make_server
from kbit.service.gateway_client import HttpService
from kbit.spec import errors, parse_sweep

SWEEP = "name: g\nmodels: [m/a]\ngrid: {bits: [4], dtypes: [nf, int], blocksizes: [64]}\ntasks: [x]\n"


@pytest.fixture
def gateway(tmp_path):
    url = f"sqlite:///{tmp_path / 'kbit.db'}"
    engine = connect(url)
    with session_scope(engine) as s:
        tokens = {"nlp": teams.create_team(s, "nlp"), "vision": teams.create_team(s, "vision")}
    server = make_server(Operations(engine), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", engine, tokens
    server.shutdown()
    server.server_close()
    engine.dispose()


def spec(text=SWEEP):
    return parse_sweep(text, family_members=lambda f: []).spec()


def test_a_sweep_submitted_over_http_is_queued_for_the_scheduler(gateway):
    address, engine, tokens = gateway
    client = HttpService(address)
    reply = client.submit(spec(), "nlp", tokens["nlp"], "alice")
    assert (reply["name"], reply["team"], reply["total"], reply["queued"]) == ("g", "nlp", 3, 3)
    assert client.submit(spec(), "nlp", tokens["nlp"])["sweep_id"] == reply["sweep_id"]  # idempotent
    assert client.progress(reply["sweep_id"])["queued"] == 3
    assert [s["sweep_id"] for s in client.sweeps("nlp")] == [reply["sweep_id"]] and client.sweeps("vision") == []
    with session_scope(engine) as s:  # what the scheduler does next: the runs are in the queue
        assert len(queue.claim_runs(s, worker="w", limit=10)) == 3
    assert {r["status"] for r in client.results(reply["sweep_id"])} == {"running"}


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


@pytest.mark.parametrize("path, body, headers, status, words", [
    ("/sweeps", b"{}", {}, 401, "no token"),
    ("/sweeps", b"not json", {"Authorization": "Bearer x"}, 400, "not JSON"),
    ("/sweeps", b'{"team": "nlp"}', {"Authorization": "Bearer x"}, 400, "needs 'spec'"),
    ("/nowhere", b"{}", {}, 404, "no such resource"),
])
def test_bad_requests_get_a_clear_status_and_message(gateway, path, body, headers, status, words):
    address, *_ = gateway
    request = urllib.request.Request(address + path, data=body, method="POST", headers=headers)
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

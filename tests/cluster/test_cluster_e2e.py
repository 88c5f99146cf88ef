"""End to end through a real Ray head and the Ray client, with the micro model family and the real
evaluator: `kbit submit --address ray://... --wait`, results in the database, `kbit results` output,
the cache (same sweep twice runs nothing), and cancelling."""

from __future__ import annotations

import csv
import io
import json

import pytest

from kbit.cli.main import main
from kbit.db import connect, queries, session_scope, teams

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def team(ray_head):
    """Team `e2e` in the head's database (the session's KBIT_HOME) and its token in the environment."""
    engine = connect()
    with session_scope(engine) as s:
        token = teams.create_team(s, "e2e")
    yield engine, token
    engine.dispose()


@pytest.fixture
def env(team, monkeypatch, ray_head):
    monkeypatch.setenv("KBIT_TOKEN", team[1])
    monkeypatch.delenv("KBIT_RAY_ADDRESS", raising=False)
    return ray_head["address"]


def micro_sweep(tmp_path, name="micro-e2e", bits="[4, 8]", dtypes="[nf, int]", blocksizes="[64]",
                evaluation="{limit: 8, batch_size: 8}"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nteam: e2e\nmodels:\n  - family: micro\n"
        f"grid: {{bits: {bits}, dtypes: {dtypes}, blocksizes: {blocksizes}}}\n"
        f"tasks: [kbit_lastword, kbit_choice, kbit_heldout]\neval: {evaluation}\n"
    )
    return str(path)


def test_submit_through_the_ray_client_runs_everything_and_results_match(env, team, tmp_path, capsys):
    engine = team[0]
    path = micro_sweep(tmp_path)
    assert main(["submit", path, "--address", env, "--wait"]) == 0
    out = capsys.readouterr().out
    sweep_id = int(out.split("sweep ")[1].split()[0])
    # next, while the worker is still up: runs that fail make `--wait` exit 1, saying how many and why
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: missing-model\nteam: e2e\nmodels: [./no-such-model]\n"
                       "grid: {bits: [4], dtypes: [nf], blocksizes: [64]}\ntasks: [kbit_heldout]\neval: {limit: 8}\n")
    assert main(["submit", str(missing), "--address", env, "--wait"]) == 1
    err = capsys.readouterr().err
    assert "kbit submit: warning: ./no-such-model does not exist on this machine" in err  # said before submitting
    assert "2 of 2 runs failed: 2 x model_not_found: model path './no-such-model' does not exist" in err, err
    with session_scope(engine) as s:
        rows = queries.results_rows(s, sweep_id=sweep_id)
        members = {r["model"] for r in rows}
    from kbit.family.members import family_members

    assert members == set(family_members("micro"))
    assert len(rows) == len(members) * 5 and all(r["status"] == "done" for r in rows), rows
    assert all(r["mean_zero_shot/acc"] is not None and r["total_bits"] > 0 for r in rows)
    assert f"{len(rows)}" in out and "done" in out  # the summary table

    # the workers that ran it (those not yet idle for KBIT_WORKER_IDLE_S), with the models they hold
    from kbit.cluster.client import RayService

    with RayService(env) as svc:
        workers = svc.workers()
    assert all(w["node_alive"] and w["gpu_share"] == 0 and w["state"] in ("idle", "busy") for w in workers)
    assert {m for w in workers for m, _ in w["loaded"]} <= members
    assert main(["status", "--address", env]) == 0
    listing = capsys.readouterr().out
    assert ("workers" if workers else "no workers running") in listing

    assert main(["results", "--sweep", str(sweep_id), "--format", "csv", "--address", env]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(int(r["run_id"]) for r in table) == sorted(r["run_id"] for r in rows)
    by_id = {r["run_id"]: r for r in rows}
    for line in table:
        expected = by_id[int(line["run_id"])]
        assert line["label"] == expected["label"] and line["model"] == expected["model"]
        assert float(line["mean_zero_shot/acc"]) == pytest.approx(expected["mean_zero_shot/acc"])
        assert float(line["total_bits"]) == pytest.approx(expected["total_bits"])

    out_file = tmp_path / "runs.json"
    assert main(["results", "--sweep", str(sweep_id), "--format", "json", "--output", str(out_file)]) == 0
    assert {r["run_id"] for r in json.loads(out_file.read_text())} == set(by_id)

    # the same sweep again: same id, nothing new runs
    before = {r["run_id"]: (r["attempts"], r["finished_at"]) for r in rows}
    assert main(["submit", path, "--address", env, "--wait"]) == 0
    again = capsys.readouterr().out
    assert f"sweep {sweep_id} " in again
    with session_scope(engine) as s:
        after = {r["run_id"]: (r["attempts"], r["finished_at"]) for r in queries.results_rows(s, sweep_id=sweep_id)}
    assert after == before

    # a new sweep with the same runs under another name: every run cached, none executed
    renamed = micro_sweep(tmp_path, name="micro-e2e-again")
    assert main(["submit", renamed, "--address", env, "--wait"]) == 0
    text = capsys.readouterr().out
    new_id = int(text.split("sweep ")[1].split()[0])
    with session_scope(engine) as s:
        progress = [r["status"] for r in queries.results_rows(s, sweep_id=new_id)]
    assert progress == ["cached"] * len(rows)


def test_cancel_through_the_cluster(env, team, tmp_path, capsys):
    # 282 runs of 40 documents one at a time: minutes of work for the cluster's two CPUs, against
    # the seconds a second client connect takes (with 8 documents in batches of 8 the workers, warm
    # from the test before, finished all 282 before the cancel once)
    path = micro_sweep(tmp_path, name="micro-cancel", bits="[2, 3, 4, 5, 6, 7, 8]",
                       dtypes="[int, fp, nf, quantile, dynamic]", blocksizes="[32, 64, 128, 256]",
                       evaluation="{limit: 40, batch_size: 1}")
    assert main(["submit", path, "--address", env]) == 0
    sweep_id = int(capsys.readouterr().out.split("sweep ")[1].split()[0])
    assert main(["cancel", str(sweep_id), "--team", "e2e", "--address", env]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["status", str(sweep_id), "--address", env]) == 0
    with session_scope(team[0]) as s:
        statuses = {r["status"] for r in queries.results_rows(s, sweep_id=sweep_id)}
    assert "queued" not in statuses and "cancelled" in statuses


def test_user_errors_cross_the_ray_client_as_their_own_class_and_one_line(env, team, tmp_path, capsys, monkeypatch):
    from kbit.cluster.client import RayService
    from kbit.errors import AuthError, NotFound, SweepError

    with RayService(env) as svc:
        with pytest.raises(NotFound) as info:
            svc.progress(987654)
        assert str(info.value) == "sweep 987654 does not exist; `kbit status` lists the sweeps"
        with pytest.raises(AuthError):
            svc.cancel(987654, "e2e", "not-the-token")
        with pytest.raises(SweepError, match="not a valid sweep spec"):
            svc.submit({"name": "broken"}, "e2e", team[1])
    assert main(["status", "987654", "--address", env]) == 1
    err = capsys.readouterr().err
    assert err == "kbit status: error: sweep 987654 does not exist; `kbit status` lists the sweeps\n"
    monkeypatch.setenv("KBIT_TOKEN", "not-the-token")
    assert main(["submit", micro_sweep(tmp_path, name="wrong-token"), "--address", env]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kbit submit: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_the_heads_client_proxy_runs_with_grpcs_fork_handlers_off(ray_head):
    # The proxy forks a server per client; with the handlers on, some of those children died at once
    # and the client waited 30-44 s for it (kbit.cli.localcluster.HEAD_ENV).
    from kbit.cli.localcluster import session_processes

    proxies = [p for p in session_processes(ray_head["head_pid"]) if "--mode=proxy" in " ".join(p.cmdline())]
    assert len(proxies) == 1
    assert proxies[0].environ().get("GRPC_ENABLE_FORK_SUPPORT") == "false"

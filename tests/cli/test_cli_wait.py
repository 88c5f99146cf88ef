"""What `kbit submit --wait` says and returns once a sweep ends: 0 when no run failed, else 1 and
one line with how many failed and why (the first line of each different error). The runs are
processed by the real worker body (kbit.service.run_group) on SQLite; the cluster path is in
tests/cluster/test_cluster_e2e.py."""

from __future__ import annotations

import dataclasses

import pytest
from rich.console import Console

from kbit.cli.progress import failed_exit, finish
from kbit.db import queue, session_scope, teams
from kbit.service import Operations
from kbit.service.grouprun import noop_evaluate, run_group
from kbit.sweeps.reader import parse_sweep

SWEEP = "name: w\nmodels: [m/a]\ngrid: {bits: [3, 4, 8], dtypes: [nf], blocksizes: [64]}\ntasks: [x]\n"


def evaluate_failing_below(bits_ok: int, error: str):
    """An evaluator whose configs below `bits_ok` bits fail for good with `error` (the 16-bit
    baseline counts as ok); the others are done."""
    def evaluate(model, revision, configs, eval_spec, should_stop, cache=None):
        for config, done in zip(configs, noop_evaluate(model, revision, configs, eval_spec, should_stop)):
            if config["bits"] < bits_ok:
                yield {**done, "status": "failed", "error_type": "model_not_found", "error": error, "retryable": False}
            else:
                yield done
    return evaluate


@pytest.fixture
def ops(engine):
    """(Operations on KBIT_HOME's database (tests/cli/conftest.py), its URL, team nlp's token)."""
    with session_scope(engine) as s:
        token = teams.create_team(s, "nlp")
    return Operations(engine), engine.url.render_as_string(hide_password=False), token


def run_sweep(ops, evaluate) -> int:
    """Submit the sweep, run all its runs through run_group, return the sweep id."""
    service, url, token = ops
    sweep_id = service.submit(parse_sweep(SWEEP, family_members=lambda f: []).spec(), "nlp", token)["sweep_id"]
    with session_scope(service.engine) as s:
        claimed = queue.claim_runs(s, worker="w1", limit=10)
    run_group(url, "w1", [dataclasses.asdict(c) for c in claimed], evaluate)
    return sweep_id


def wait_exit(ops, sweep_id, capsys) -> tuple[int, str, str]:
    final, failures = finish(ops[0], sweep_id, Console(width=200))
    code = failed_exit(sweep_id, final, failures)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_run_failed_exits_1_with_how_many_and_why(ops, capsys):
    error = "model path './m' does not exist; check the path\nTraceback (most recent call last): ..."
    sweep_id = run_sweep(ops, evaluate_failing_below(99, error))
    code, out, err = wait_exit(ops, sweep_id, capsys)
    assert code == 1
    assert err == (f"kbit submit: sweep {sweep_id}: 4 of 4 runs failed: 4 x model_not_found: model path './m' does "
                   f"not exist; check the path (`kbit status {sweep_id}` lists the failed runs)\n")
    assert "failed runs" in out  # the table of failures, as before


def test_some_runs_failed_exits_1_too(ops, capsys):
    sweep_id = run_sweep(ops, evaluate_failing_below(4, "CUDA out of memory while quantizing"))
    code, _, err = wait_exit(ops, sweep_id, capsys)
    assert code == 1 and f"sweep {sweep_id}: 1 of 4 runs failed: 1 x model_not_found: CUDA out of memory" in err


def test_no_run_failed_exits_0_and_says_nothing_on_stderr(ops, capsys):
    sweep_id = run_sweep(ops, noop_evaluate)
    code, out, err = wait_exit(ops, sweep_id, capsys)
    assert (code, err) == (0, "") and "failed runs" not in out

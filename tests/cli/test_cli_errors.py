"""Every user error through the `kbit` CLI: one clear line on stderr, a non-zero exit, no traceback,
nothing written."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from kbit.cli.main import main
from kbit.db import connect, queries, session_scope, teams
from tests.support.net import free_port
from tests.support.paths import REPO


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An embedded KBIT_HOME with team nlp; returns (engine, token)."""
    monkeypatch.setenv("KBIT_HOME", str(tmp_path))
    for var in ("KBIT_DATABASE_URL", "KBIT_RAY_ADDRESS", "KBIT_TOKEN", "KBIT_TEAM"):
        monkeypatch.delenv(var, raising=False)
    engine = connect()
    with session_scope(engine) as s:
        token = teams.create_team(s, "nlp")
    yield engine, token
    engine.dispose()


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and lines[0].startswith("kbit "), err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


def no_sweeps(engine):
    with session_scope(engine) as s:
        return queries.list_sweeps(s) == []


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_bad_sweep_file_lists_problems_and_writes_nothing(home, tmp_path, capsys, monkeypatch):
    engine, token = home
    monkeypatch.setenv("KBIT_TOKEN", token)
    path = write(tmp_path, "models: [a]\ngrid: {bits: [9], dtypes: [nf], blocksizes: [64]}\ntasks: [x]\nteam: nlp\n")
    code, out, err = run_cli(capsys, "submit", path)
    assert_one_line_error(code, err, "line 2", "grid.bits[0]", "9 is not allowed")
    assert no_sweeps(engine)


def test_missing_sweep_file(home, capsys):
    code, _, err = run_cli(capsys, "submit", "/nonexistent/sweep.yaml", "--team", "nlp")
    assert_one_line_error(code, err, "/nonexistent/sweep.yaml", "file not found")


def test_wrong_token_fails_before_anything_is_written(home, tmp_path, capsys, monkeypatch):
    engine, _ = home
    monkeypatch.setenv("KBIT_TOKEN", "wrong")
    path = write(tmp_path, "name: a\nteam: nlp\nmodels: [a]\ntasks: [x]\n")
    started = time.monotonic()
    code, _, err = run_cli(capsys, "submit", path)
    assert_one_line_error(code, err, "wrong token for team 'nlp'")
    assert time.monotonic() - started < 5  # checked before any Ray start
    assert no_sweeps(engine)


def test_missing_token_and_team_name_the_fix(home, tmp_path, capsys):
    path = write(tmp_path, "name: a\nmodels: [a]\ntasks: [x]\n")
    code, _, err = run_cli(capsys, "submit", path)
    assert_one_line_error(code, err, "--team", "KBIT_TEAM")
    code, _, err = run_cli(capsys, "submit", path, "--team", "nlp")
    assert_one_line_error(code, err, "KBIT_TOKEN", "kbit team create nlp")


@pytest.mark.slow
def test_unreachable_address_fails_fast_with_the_address(home, tmp_path, capsys, monkeypatch):
    engine, token = home
    monkeypatch.setenv("KBIT_TOKEN", token)
    path = write(tmp_path, "name: a\nteam: nlp\nmodels: [a]\ntasks: [x]\n")
    address = f"ray://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, _, err = run_cli(capsys, "submit", path, "--address", address)
    assert_one_line_error(code, err, f"cannot reach the Ray cluster at {address}")
    assert time.monotonic() - started < 20
    assert no_sweeps(engine)
    code, _, err = run_cli(capsys, "status", "--address", "ray://nohost")
    assert_one_line_error(code, err, "ray://HOST:PORT")


def test_unknown_sweep_and_other_teams_sweep(home, tmp_path, capsys, monkeypatch):
    engine, token = home
    code, _, err = run_cli(capsys, "status", "42")
    assert_one_line_error(code, err, "sweep 42 does not exist")
    code, _, err = run_cli(capsys, "results", "--sweep", "42")
    assert_one_line_error(code, err, "sweep 42 does not exist")
    monkeypatch.setenv("KBIT_TOKEN", token)
    code, _, err = run_cli(capsys, "cancel", "42", "--team", "nlp")
    assert_one_line_error(code, err, "sweep 42 does not exist")


def test_unreachable_database(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KBIT_DATABASE_URL", "postgresql+psycopg://kbit:secret@127.0.0.1:1/kbit")
    code, _, err = run_cli(capsys, "status")
    assert_one_line_error(code, err, "cannot open the database", "127.0.0.1:1")
    assert "secret" not in err


def test_team_create_twice(home, capsys):
    code, out, _ = run_cli(capsys, "team", "create", "vision")
    assert code == 0 and "export KBIT_TEAM=vision KBIT_TOKEN=" in out
    token = out.strip().split("KBIT_TOKEN=")[-1]
    with session_scope(home[0]) as s:
        teams.verify_token(s, "vision", token)  # the printed token works
    code, _, err = run_cli(capsys, "team", "create", "vision")
    assert_one_line_error(code, err, "team 'vision' already exists")


def test_check_validates_without_submitting(home, tmp_path, capsys):
    path = write(tmp_path, "name: a\nteam: nlp\nmodels: [a, b]\ngrid: {bits: [4], dtypes: [nf, fp], blocksizes: [64]}\n"
                           "tasks: [x]\n")
    code, out, _ = run_cli(capsys, "submit", path, "--check")
    assert code == 0 and "2 models x 3 configs = 6 runs" in out
    assert no_sweeps(home[0])


@pytest.mark.slow
def test_the_installed_entry_point_prints_help_and_one_line_errors(tmp_path):
    kbit = [sys.executable, "-m", "kbit.cli.main"]
    shown = subprocess.run([*kbit, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    for command in ("submit", "status", "cancel", "results", "team", "demo", "dashboard", "up", "down", "examples:"):
        assert command in shown.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a\n")
    failed = subprocess.run([*kbit, "submit", str(bad), "--team", "x"], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env={"KBIT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert failed.returncode == 1
    assert failed.stderr.startswith("kbit submit: error: ") and "not valid YAML" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_an_operator_sets_a_teams_priority_limit(home, capsys):
    assert main(["team", "create", "ops", "--max-priority", "3"]) == 0
    capsys.readouterr()
    assert main(["team", "priority", "ops", "7"]) == 0
    assert "priority up to 7" in capsys.readouterr().out
    assert main(["team", "priority", "ops", "11"]) == 1
    assert "max priority 11 is not allowed; use a whole number from -10 to 10" in capsys.readouterr().err
    assert main(["team", "priority", "nobody", "1"]) == 1
    assert "team 'nobody' does not exist" in capsys.readouterr().err


def test_family_build_takes_seeds_and_ships_only_the_familys_own(home, capsys, monkeypatch):
    from kbit.family import members

    built = []
    monkeypatch.setattr(members, "build_model", lambda model: built.append(model) or members.model_dir(model))
    monkeypatch.setattr(members, "built_info", lambda model: {"train": {"n_params": 1}})
    code, out, _ = run_cli(capsys, "family", "build", "micro", "--seeds", "2")
    assert code == 0 and built == ["kbit/micro/m1", "kbit/micro/m2", "kbit/micro/m1@seed2", "kbit/micro/m2@seed2"]
    assert "kbit/micro/m2@seed2: built at" in out
    code, _, err = run_cli(capsys, "family", "build", "micro", "--seeds", "2", "--ship")
    assert_one_line_error(code, err, "--ship writes the family's own seed only")
    code, _, err = run_cli(capsys, "family", "build", "micro", "--seeds", "0")
    assert_one_line_error(code, err, "--seeds 0", "1 or more")

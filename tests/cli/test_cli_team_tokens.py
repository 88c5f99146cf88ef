"""Team tokens on the command line: `kbit team rotate`, the "team exists" hint, the token file
`kbit demo` keeps (and that other commands read when KBIT_TOKEN is not set), and the error that
names both when neither is there."""

from __future__ import annotations

import stat

import pytest

from kbit.cli.demo import demo_team
from kbit.cli.main import main
from kbit.db import session_scope, teams
from kbit.errors import AuthError
from kbit.service import Operations
from kbit.sweeps.reader import parse_sweep

SWEEP = "name: t\nmodels: [m/a]\ngrid: {bits: [4], dtypes: [nf], blocksizes: [64]}\ntasks: [x]\n"


def printed_token(out: str) -> str:
    return out.strip().split("KBIT_TOKEN=")[-1]


def test_rotate_prints_a_new_token_and_the_old_one_stops_working(engine, capsys):
    assert main(["team", "create", "nlp"]) == 0
    old = printed_token(capsys.readouterr().out)
    assert main(["team", "create", "nlp"]) == 1
    assert capsys.readouterr().err == ("kbit team: error: team 'nlp' already exists; pick another name, or "
                                       "`kbit team rotate nlp` to issue it a new token\n")
    assert main(["team", "rotate", "nlp"]) == 0
    out = capsys.readouterr().out
    assert "team nlp has a new token; the old one no longer works" in out and "export KBIT_TEAM=nlp KBIT_TOKEN=" in out
    new = printed_token(out)
    assert new != old
    with session_scope(engine) as s:
        teams.verify_token(s, "nlp", new)
        with pytest.raises(AuthError):
            teams.verify_token(s, "nlp", old)
    assert main(["team", "rotate", "nobody"]) == 1
    assert "team 'nobody' does not exist; create it first: `kbit team create nobody`" in capsys.readouterr().err


def test_the_demo_token_file_is_used_when_kbit_token_is_unset(engine, tmp_path, capsys):
    team, token = demo_team(engine)
    path = tmp_path / "demo-token"
    assert (team, path.read_text()) == ("demo", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sweep_id = Operations(engine).submit(parse_sweep(SWEEP, family_members=lambda f: []).spec(), team, token)["sweep_id"]
    # a command that needs the team's token, with KBIT_TOKEN unset: it reads the file and says so
    assert main(["cancel", str(sweep_id), "--team", "demo"]) == 0
    out, err = capsys.readouterr()
    assert f"sweep {sweep_id} cancelled" in out
    assert f"KBIT_TOKEN is not set; using team demo's token from {path}" in err
    # rotating the demo team's token keeps the file in step, so the next command still works
    assert main(["team", "rotate", "demo"]) == 0
    out = capsys.readouterr().out
    assert path.read_text() == printed_token(out) != token and f"also written to {path}" in out
    assert demo_team(engine) == ("demo", path.read_text())  # the demo reuses it as is


def test_no_token_anywhere_names_the_variable_the_file_and_the_commands(engine, tmp_path, capsys):
    with session_scope(engine) as s:
        teams.create_team(s, "nlp")
    assert main(["cancel", "1", "--team", "nlp"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kbit cancel: error: no token for team 'nlp'; export KBIT_TOKEN=")
    for words in ("`kbit team create nlp` printed", str(tmp_path / "nlp-token"), "`kbit team rotate nlp`"):
        assert words in err, err

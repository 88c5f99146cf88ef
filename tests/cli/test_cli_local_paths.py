"""`kbit submit --check` warns about a local model folder or calibration file missing on this
machine (the workers may still have it, so it is a warning, not an error)."""

from __future__ import annotations

import pytest

from kbit.cli.main import main


@pytest.fixture
def home(kbit_env, monkeypatch):
    """KBIT_HOME (tests/cli/conftest.py) as the working folder, where the sweeps' relative paths point."""
    monkeypatch.chdir(kbit_env)
    return kbit_env


def check(home, capsys, models: str, extra: str = "", methods: str = "rtn") -> tuple[int, str, str]:
    path = home / "s.yaml"
    path.write_text(f"name: a\nteam: nlp\nmodels: {models}\n"
                    f"grid: {{bits: [4], dtypes: [nf], blocksizes: [64], methods: [{methods}]}}\ntasks: [x]\n{extra}")
    code = main(["submit", str(path), "--check"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_missing_local_folder_is_a_warning_and_the_file_still_valid(home, capsys):
    (home / "here").mkdir()
    code, out, err = check(home, capsys, "[./here, ./absent, /nowhere/opt-125m, models/opt/125m, EleutherAI/pythia-70m]")
    assert code == 0 and "valid. 5 models x 2 configs" in out
    warned = [line for line in err.splitlines() if line.startswith("kbit submit: warning: ")]
    assert [line.split("warning: ")[1].split(" does not exist")[0] for line in warned] == [
        "./absent", "/nowhere/opt-125m", "models/opt/125m"]
    assert "the workers have it at that path" in warned[0]


def test_a_missing_calibration_file_is_a_warning(home, capsys):
    extra = "calibration: {source: ./calib.txt}\n"
    code, _, err = check(home, capsys, "[EleutherAI/pythia-70m]", extra, methods="gptq")
    assert code == 0 and "kbit submit: warning: ./calib.txt does not exist on this machine" in err
    (home / "calib.txt").write_text("some text")
    assert check(home, capsys, "[EleutherAI/pythia-70m]", extra, methods="gptq")[2] == ""


def test_hub_ids_and_bundled_models_get_no_warning(home, capsys):
    code, _, err = check(home, capsys, "[EleutherAI/pythia-70m, gpt2, kbit/micro/m1]")
    assert (code, err) == (0, "")

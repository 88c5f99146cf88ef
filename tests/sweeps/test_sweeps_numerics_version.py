"""The cache key's numerics version (`kbit.version.numerics_version`): a hash of the files that decide
a result, read from the package itself. It moves every key when a kernel, quantization or evaluation
file changes, and no key when anything else does (README, dashboard, CLI, database); a copy of the
package outside git (a wheel's layout) has the same version. Edits go to a copy in tmp_path."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from kbit import __version__
from kbit.sweeps import parse_sweep
from kbit.sweeps.expand import expand_runs
from kbit.version import NOT_NUMERICS, PACKAGE, code_version, numerics_files, numerics_version

SWEEP = ("name: n\nmodels: [m/a, m/b]\n"
         "grid: {bits: [3, 4], dtypes: [nf, int], blocksizes: [64], methods: [rtn, gptq]}\ntasks: [x]\n")


@pytest.fixture
def package(tmp_path):
    """A copy of the installed kbit package with the repository's README beside it, and no git."""
    shutil.copytree(PACKAGE, tmp_path / "kbit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACKAGE.parent / "README.md", tmp_path / "README.md")
    return tmp_path / "kbit"


def keys(package=PACKAGE) -> list[str]:
    sweep = parse_sweep(SWEEP, family_members=lambda f: [])
    return [run["cache_key"] for run in expand_runs(sweep, numerics_version(package))]


def touch(path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_a_copy_outside_git_has_the_installed_version(package):
    assert numerics_version(package) == numerics_version()
    assert keys(package) == keys() and len(set(keys(package))) == 18


def test_it_covers_kernels_quantization_and_evaluation_only():
    files = numerics_files()
    assert {"kernels/blockwise.py", "kernels/codebooks.py", "kernels/gptq.py", "workers/run.py",
            "workers/lmeval.py", "family/tasks/kbit_tasks.py", "family/tasks/kbit_choice.yaml",
            "sweeps/evalspec.py"} <= set(files)
    assert not [f for f in files if f.split("/")[0] in ("cli", "dashboard", "db", "service", "cluster", "analysis")]
    assert not set(NOT_NUMERICS) & set(files)


@pytest.mark.parametrize("edited", ["../README.md", "dashboard/app.py", "cli/main.py", "db/queue.py",
                                    "service/gateway.py", "sweeps/reader.py", "analysis/findings.py", "version.py"])
def test_an_edit_outside_the_numerics_keeps_every_key(package, edited):
    before = keys(package)
    touch(package / edited)
    (package / "kernels" / "checkpoint.py").write_text("# the export format: not numerics\n")
    assert keys(package) == before


@pytest.mark.parametrize("edited", ["kernels/blockwise.py", "kernels/triton_kernels.py", "workers/lmeval.py",
                                    "family/tasks/kbit_lastword.yaml", "sweeps/evalspec.py"])
def test_an_edit_to_a_numerics_file_changes_every_key(package, edited):
    before = keys(package)
    touch(package / edited)
    after = keys(package)
    assert not set(after) & set(before) and len(set(after)) == len(before)


def test_a_new_kernel_file_changes_every_key(package):
    before = keys(package)
    (package / "kernels" / "fast_path.py").write_text("def dequantize(x):\n    return x\n")
    assert not set(keys(package)) & set(before)


def git(root, *args):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


def test_the_code_version_names_the_commit_and_local_changes(tmp_path):
    assert code_version(tmp_path) == __version__  # no git: an installed wheel
    (tmp_path / "kbit.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "kbit.py")
    git(tmp_path, "commit", "-q", "-m", "one")
    sha = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    code_version.cache_clear()  # it is read once per process
    assert code_version(tmp_path) == f"{__version__}+g{sha}"
    (tmp_path / "kbit.py").write_text("x = 2\n")
    code_version.cache_clear()
    assert code_version(tmp_path) == f"{__version__}+g{sha}.dirty"


def test_other_family_weights_give_other_keys(package, monkeypatch):
    """The shipped weights' markers (their sha256) are numerics; a family trained here is other weights."""
    assert any(name.startswith("family/weights/") for name in numerics_files())
    before = keys(package)
    touch(next((package / "family" / "weights").glob("*/*/kbit-build.json")))
    assert not set(keys(package)) & set(before)
    monkeypatch.setenv("KBIT_FAMILY_WEIGHTS", "build")
    assert not set(keys()) & set(before) and not set(keys()) & set(keys(package))

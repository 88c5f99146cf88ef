"""The installed package stands alone: the demo's sweep is package data (examples/demo.yaml is a
link to it), and a built wheel carries it, the task YAMLs and the migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kbit.cli.demo import default_sweep_path

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_sweep_is_inside_the_package_and_the_example_is_the_same_file():
    path = default_sweep_path()
    assert path.is_relative_to(REPO / "kbit")
    assert (REPO / "examples" / "demo.yaml").resolve() == path.resolve()


@pytest.mark.slow
def test_a_built_wheel_carries_the_demo_sweep_tasks_and_migrations(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = tmp_path.glob("kbit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kbit/cli/demo.yaml" in names
    assert {"kbit/family/tasks/kbit_heldout.yaml", "kbit/db/alembic.ini"} <= names
    assert any(n.startswith("kbit/db/migrations/versions/0001") for n in names)
    assert not any(n.startswith(("benchmarks/", "tests/")) for n in names)

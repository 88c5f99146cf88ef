"""`make gpu-check`'s dry run (KBIT_GPU_CHECK_DRY_RUN=1): every stage of scripts/gpu_check.sh runs on
CPU in the Triton interpreter with small shapes and writes its table, so a short GPU lease is spent
measuring, not debugging the script. About 30 s: five Python processes, each importing torch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
TABLES = ("summary.md", "tests.md", "kernels.md", "model.md")

pytestmark = pytest.mark.slow


def _dry_run(out: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "KBIT_GPU_CHECK_DRY_RUN": "1", "KBIT_GPU_CHECK_PYTHON": sys.executable,
            "KBIT_GPU_CHECK_OUT": str(out), **env}
    full.pop("KBIT_TEST_GPU", None)
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=600)


def test_dry_run_runs_every_stage_and_writes_its_tables(tmp_path):
    done = _dry_run(tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted((*TABLES, "log.txt"))
    text = {name: (tmp_path / name).read_text() for name in TABLES}
    for name, body in text.items():
        assert body.startswith("# kbit GPU check: "), name
        for field in ("- device: cpu", "- driver: ", "- torch ", ", triton ", "- date: "):
            assert field in body, (name, field)
    for stage in ("tests", "bench", "model"):
        assert f"| {stage} | ok |" in text["summary.md"]
    assert "| install | skipped: dry run" in text["summary.md"]
    counts = text["tests.md"].split("|---|---|---|---|---|---|\n")[1].split("|")
    assert int(counts[1]) > 0 and int(counts[2]) == int(counts[1]) and int(counts[3]) == int(counts[4]) == 0
    for k in range(2, 9):
        for m, kernel in ((1, "GEMV"), (16, "GEMM"), (64, "GEMM")):
            assert f"| 96x160 | {m} | {kernel} | nf{k}-b64 | triton |" in text["kernels.md"]
    assert "% of ideal" in text["kernels.md"] and "ideal speedup" in text["kernels.md"]
    assert "| yes |" in text["model.md"] and "| NO |" not in text["model.md"]


def test_without_a_usable_python_it_fails_but_still_writes_the_summary(tmp_path):
    done = _dry_run(tmp_path, KBIT_GPU_CHECK_PYTHON=str(tmp_path / "no-python"))
    assert done.returncode == 1
    assert "no Python with CUDA torch and triton" in (tmp_path / "summary.md").read_text()

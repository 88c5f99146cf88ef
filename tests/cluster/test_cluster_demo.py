"""`kbit demo` on the micro family through the real CLI entry point (embedded Ray, SQLite), with
its printed frontier summary checked against the database."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from clustertest_helpers import REPO

from kbit.cluster.demo import frontier_summary
from kbit.db import connect, queries, session_scope


def test_demo_on_the_micro_family_prints_the_frontier_from_the_database(offline_env, tmp_path):
    env = dict(os.environ, KBIT_HOME=str(tmp_path), COLUMNS="200")
    env.pop("KBIT_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "kbit.cluster.cli", "demo", "--sweep", str(REPO / "examples" / "micro.yaml")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "kbit dashboard" in out and "best precision per bit budget" in out

    engine = connect(f"sqlite:///{tmp_path / 'kbit.db'}")
    with session_scope(engine) as s:
        sweeps = queries.list_sweeps(s, team="demo")
    assert len(sweeps) == 1 and sweeps[0]["done"] == sweeps[0]["total"] > 0
    budgets, _ = frontier_summary(engine, sweeps[0]["sweep_id"])
    bpb_budgets, _ = frontier_summary(engine, sweeps[0]["sweep_id"], "kbit_heldout", "bits_per_byte")
    assert budgets and bpb_budgets
    assert "(kbit_heldout/bits_per_byte, lower is better)" in out
    rows = [line for line in out.splitlines() if re.search(r"\d\.\d{4}\s*│?\s*$", line)]
    assert len(rows) == len(budgets) + len(bpb_budgets)
    for entry, line in zip(budgets + bpb_budgets, rows):
        best = entry["best"]
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        assert cells[1] == entry["budget_model"] and cells[2] == str(best["bits"]) and cells[3] == best["dtype"]
        assert cells[5] == best["model"] and float(cells[6]) == round(best["value"], 4)

    # a second run reuses every result
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert again.returncode == 0
    with session_scope(engine) as s:
        assert len(queries.list_sweeps(s, team="demo")) == 1  # the same sweep, nothing new queued

"""`kbit demo` on the micro family through the real CLI entry point (embedded Ray, SQLite), with
its printed frontier summary checked against the database, and the RESULTS.md it writes checked
against the committed one digit for digit (the shipped weights make it the same on every machine;
after a change to the numerics or the report, regenerate it: `KBIT_HOME=$(mktemp -d) kbit demo
--sweep examples/micro.yaml` and copy its RESULTS.md to tests/cluster/expected/micro-demo-RESULTS.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from clustertest_helpers import REPO

from kbit.analysis import verdict_text
from kbit.cli.demo import frontier_summary
from kbit.db import connect, queries, session_scope

EXPECTED = REPO / "tests" / "cluster" / "expected" / "micro-demo-RESULTS.md"

pytestmark = pytest.mark.ray


def test_demo_on_the_micro_family_prints_the_frontier_from_the_database(offline_env, tmp_path):
    env = dict(os.environ, KBIT_HOME=str(tmp_path), COLUMNS="200")
    env.pop("KBIT_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "kbit.cli.main", "demo", "--sweep", str(REPO / "examples" / "micro.yaml")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert f"{sys.executable} -m kbit.cli.main dashboard" in out and "which precision wins at equal total bits" in out
    # piped, not a terminal: plain progress lines while the sweep runs, then the phases
    assert re.search(r"^sweep \d+: \d+/\d+ finished", out, re.M), out[:3000]
    assert re.search(r"^phases: model family \S+, sweep \S+ .*total \S+$", out, re.M)

    engine = connect(f"sqlite:///{tmp_path / 'kbit.db'}")
    with session_scope(engine) as s:
        sweeps = queries.list_sweeps(s, team="demo")
    assert len(sweeps) == 1 and sweeps[0]["done"] == sweeps[0]["total"] > 0
    acc = frontier_summary(engine, sweeps[0]["sweep_id"]).budgets.to_dict("records")
    bpb = frontier_summary(engine, sweeps[0]["sweep_id"], "kbit_heldout", "bits_per_byte").budgets.to_dict("records")
    assert acc and bpb
    assert "(kbit_heldout/bits_per_byte, lower is better)" in out
    rows = [line for line in out.splitlines() if re.match(r"^[│|] \d+\.\d{3} ", line)]
    assert len(rows) == len(acc) + len(bpb)
    for entry, line in zip(acc + bpb, rows):
        cells = [c.strip() for c in re.split(r"[│|]", line) if c.strip()]
        assert float(cells[0]) == round(entry["budget_bits"] / 1e6, 3)
        verdict = verdict_text(entry["winner"], entry["decided"], entry["missing"])
        verdict += f" ({entry['winner_label']})" if entry["decided"] else ""
        assert cells[-2] == verdict
        assert cells[-1].startswith(f"{entry['margin']:+.4f} [")
    assert re.search(r"^4-bit is almost always optimal for a fixed total of model bits: (agrees|differs|undecided) ", out, re.M)
    written = (tmp_path / "RESULTS.md").read_text()
    assert f"wrote the report: {tmp_path / 'RESULTS.md'}" in " ".join(out.split())
    assert written == EXPECTED.read_text(), f"the micro demo's RESULTS.md differs from {EXPECTED}: diff it with {tmp_path / 'RESULTS.md'}"

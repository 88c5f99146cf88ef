"""What `kbit submit --wait` and `kbit demo` print while a sweep runs: a live bar on a terminal,
plain progress lines (done, failed, rate, time left) in a log or a pipe."""

from __future__ import annotations

import io

from rich.console import Console

from kbit.cli import progress

STATES = dict.fromkeys(("queued", "running", "done", "cached", "failed", "cancelled"), 0)


class FakeSweep:
    """A sweep of 6 runs finishing one per poll, one of them failed."""

    def __init__(self):
        self.polls = 0

    def progress(self, sweep_id):
        finished = min(self.polls, 6)
        self.polls += 1
        counts = dict(STATES, done=max(finished - 1, 0), failed=min(finished, 1), total=6)
        counts["running"] = 0 if finished == 6 else 1
        counts["queued"] = 6 - finished - counts["running"]
        counts["eta_s"] = None if finished < 2 else (6 - finished) * 2.0
        return counts


def test_piped_output_gets_a_progress_line_while_the_sweep_runs():
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    final = progress.follow(FakeSweep(), 7, console, poll_s=0.01, line_every_s=0.0)
    lines = out.getvalue().splitlines()
    assert final["done"] == 5 and final["failed"] == 1
    assert len(lines) == 7  # one per poll, the first before anything finished
    assert lines[0] == "sweep 7: 0/6 finished, waiting for the first result"
    assert lines[3].startswith("sweep 7: 3/6 finished (2 done, 1 failed), ") and "runs/s, 6s left" in lines[3]
    assert lines[-1].startswith("sweep 7: 6/6 finished (5 done, 1 failed)") and "left" not in lines[-1]


def test_lines_are_spaced_out_but_the_last_one_always_comes():
    out = io.StringIO()
    progress.follow(FakeSweep(), 7, Console(file=out, width=200), poll_s=0.01, line_every_s=3600)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("sweep 7: 6/6 finished")


def test_submitted_line_says_what_was_reused():
    reply = dict(STATES, sweep_id=1, name="demo", team="demo", total=204, done=204)
    assert progress.submitted_line(reply) == (
        "sweep 1 (demo, team demo): 204 runs, 0 to run, 204 reused (their results are already in the database)")
    fresh = dict(STATES, sweep_id=2, name="x", team="t", total=10, queued=8, cached=2)
    assert progress.submitted_line(fresh) == (
        "sweep 2 (x, team t): 10 runs, 8 to run, 2 reused (their results are already in the database)")


def test_a_sweep_that_was_already_finished_gets_one_plain_line():
    done = dict(STATES, done=4, total=4, eta_s=0.0)
    assert progress.progress_line(5, done, 1.0, 4) == "sweep 5: 4/4 finished (4 done)"


def test_the_workers_table_shows_each_node_share_state_model_runs_and_loaded_models():
    rows = [
        {"name": "kbit-worker:kbit-scheduler:ab12-1", "node": "10.0.0.5", "node_alive": True, "gpu_share": 0.125,
         "state": "busy", "model": "facebook/opt-125m", "run_ids": [7, 8, 9, 10], "groups": 3, "loads": 1,
         "loaded": [["facebook/opt-125m", "main"]]},
        {"name": "kbit-worker:kbit-scheduler:ab12-2", "node": "10.0.0.6", "node_alive": False, "gpu_share": 2.0,
         "state": "idle", "model": None, "run_ids": [], "groups": 0, "loads": None, "loaded": []},
    ]
    out = io.StringIO()
    Console(file=out, width=200).print(progress.workers_table(rows))
    text = out.getvalue()
    first, second = [line for line in text.splitlines() if "10.0.0." in line]
    assert "ab12-1" in first and "0.125" in first and "busy" in first and "4 (7, 8, 9, ...)" in first
    assert first.count("facebook/opt-125m") == 2  # running it, and holding it loaded
    assert "(gone)" in second and "idle" in second and " 2 " in second

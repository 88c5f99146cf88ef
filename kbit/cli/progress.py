"""What the CLI shows while a sweep runs and when it ends: a live progress bar and summary tables (rich)."""

from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kbit.settings import RUN_STATES as STATES


def is_finished(progress: dict) -> bool:
    return progress["queued"] == 0 and progress["running"] == 0


def wait_for_sweep(svc, sweep_id: int, on_update=None, poll_s: float = 1.0, timeout_s: float | None = None) -> dict:
    """Poll a sweep's progress (`svc`: Operations or RayService) until no run is queued or running;
    return the final counts."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        progress = svc.progress(sweep_id)
        if on_update:
            on_update(progress)
        if is_finished(progress):
            return progress
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep_id} still has runs in flight after {timeout_s:.0f} s: {progress}")
        time.sleep(poll_s)


def finished_count(progress: dict) -> int:
    return progress["total"] - progress["queued"] - progress["running"]


def describe(progress: dict) -> str:
    parts = [f"{progress[s]} {s}" for s in STATES if progress.get(s)]
    eta = progress.get("eta_s")
    if eta:
        parts.append(f"ETA {format_seconds(eta)}")
    return ", ".join(parts) or "no runs"


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def submitted_line(reply: dict) -> str:
    """What a submit did: 'sweep 3 (demo, team nlp): 204 runs, 0 to run, 204 reused (results already there)'."""
    to_run = reply["queued"] + reply["running"]
    reused = reply["done"] + reply["cached"]
    line = f"sweep {reply['sweep_id']} ({reply['name']}, team {reply['team']}): {reply['total']} runs, {to_run} to run"
    if reused:
        line += f", {reused} reused (their results are already in the database)"
    ended = reply["failed"] + reply["cancelled"]
    if ended:
        line += f", {ended} failed or cancelled earlier"
    return line


def progress_line(sweep_id: int, progress: dict, elapsed_s: float, finished_at_start: int) -> str:
    """'sweep 3: 57/204 finished (55 done, 2 failed), 0.41 runs/s, 6m10s left' for logs and pipes."""
    finished = finished_count(progress)
    parts = [f"{progress[s]} {s}" for s in ("done", "cached", "failed", "cancelled") if progress.get(s)]
    rate = (finished - finished_at_start) / elapsed_s if elapsed_s > 0 else 0.0
    line = f"sweep {sweep_id}: {finished}/{progress['total']} finished" + (f" ({', '.join(parts)})" if parts else "")
    if rate:
        line += f", {rate:.2f} runs/s"
    elif not is_finished(progress):
        line += ", waiting for the first result"
    eta = progress.get("eta_s")
    if eta and progress["queued"] + progress["running"]:
        line += f", {format_seconds(eta)} left"
    return line


def follow(svc, sweep_id: int, console: Console, poll_s: float = 1.0, line_every_s: float = 10.0) -> dict:
    """Until the sweep has nothing queued or running: a live progress bar on a terminal, else (a log,
    a pipe, CI) a plain progress line every `line_every_s` seconds. Returns the final counts."""
    if not console.is_terminal:
        return _follow_plain(svc, sweep_id, console, poll_s, line_every_s)
    columns = (
        TextColumn(f"sweep {sweep_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("starting", total=None)

        def update(progress: dict) -> None:
            bar.update(task, total=progress["total"], completed=finished_count(progress), description=describe(progress))

        return wait_for_sweep(svc, sweep_id, on_update=update, poll_s=poll_s)


def _follow_plain(svc, sweep_id: int, console: Console, poll_s: float, line_every_s: float) -> dict:
    started = time.monotonic()
    state = {"first": None, "printed_at": None}

    def update(progress: dict) -> None:
        now = time.monotonic()
        if state["first"] is None:
            state["first"] = finished_count(progress)
        if state["printed_at"] is None or now - state["printed_at"] >= line_every_s or is_finished(progress):
            console.print(progress_line(sweep_id, progress, now - started, state["first"]))
            state["printed_at"] = now

    return wait_for_sweep(svc, sweep_id, on_update=update, poll_s=poll_s)


def counts_table(progress: dict, title: str) -> Table:
    table = Table(title=title)
    for state in (*STATES, "total"):
        table.add_column(state, justify="right")
    table.add_row(*(str(progress.get(s, 0)) for s in (*STATES, "total")))
    return table


def failures_table(failures: list[dict]) -> Table:
    table = Table(title="failed runs")
    for column in ("run", "model", "config", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for f in failures:
        table.add_row(str(f["run_id"]), f["model"], f.get("label") or "", str(f.get("attempts")), f.get("error") or "")
    return table


def failed_summary(sweep_id: int, final: dict, failures: list[dict], shown: int = 3) -> str:
    """How many runs failed and why, in one line: 'sweep 3: 5 of 12 runs failed: 4 x model_not_found: model
    path './m' does not exist; check the path | 1 x out_of_memory: ...' (the first line of each
    different error among `failures`, most common first, at most `shown` of them)."""
    line = f"sweep {sweep_id}: {final['failed']} of {final['total']} runs failed"
    errors = Counter(
        f"{f.get('error_type') or 'error'}: {((f.get('error') or '').strip().splitlines() or ['(no message)'])[0]}"
        for f in failures
    )
    if errors:
        line += ": " + " | ".join(f"{n} x {error}" for error, n in errors.most_common(shown))
        if len(errors) > shown:
            line += f" | {len(errors) - shown} other errors"
    return line + f" (`kbit status {sweep_id}` lists the failed runs)"


def sweeps_table(sweeps: list[dict]) -> Table:
    table = Table(title="sweeps")
    for column in ("id", "name", "team", "status", *STATES, "total", "created"):
        table.add_column(column, justify="right" if column in STATES or column in ("id", "total") else "left")
    for s in sweeps:
        table.add_row(
            str(s["sweep_id"]), s["name"], s["team"], s["status"], *(str(s.get(x, 0)) for x in STATES),
            str(s["total"]), str(s.get("created_at") or "")[:19],
        )
    return table


def workers_table(workers: list[dict]) -> Table:
    """The cluster's worker actors by node: GPU share, what each runs now, what it holds loaded."""
    table = Table(title="workers")
    for column in ("node", "worker", "gpu", "state", "model", "runs", "loaded", "groups", "loads"):
        table.add_column(column, justify="right" if column in ("gpu", "groups", "loads") else "left")
    for w in workers:
        node = w["node"] + ("" if w["node_alive"] in (True, None) else " (gone)")
        runs = w["run_ids"]
        table.add_row(
            node, w["name"].rsplit(":", 1)[-1], f"{w['gpu_share']:g}" if w["gpu_share"] else "cpu", w["state"],
            w["model"] or "", f"{len(runs)} ({', '.join(map(str, runs[:3]))}{', ...' if len(runs) > 3 else ''})" if runs else "",
            ", ".join(model for model, _ in w["loaded"]), str(w["groups"]), "" if w["loads"] is None else str(w["loads"]),
        )
    return table


def finish(svc, sweep_id: int, out: Console) -> tuple[dict, list[dict]]:
    """Follow a sweep to its end and print its counts and failed runs; returns (the final counts,
    the failed runs with their errors)."""
    final = follow(svc, sweep_id, out)
    out.print(counts_table(final, f"sweep {sweep_id}"))
    failures = svc.failures(sweep_id) if final["failed"] else []
    if failures:
        out.print(failures_table(failures))
    return final, failures


def failed_exit(sweep_id: int, final: dict, failures: list[dict], shown: int = 3) -> int:
    """The exit status of a command that waited for a sweep: 1 when runs failed, after one line on
    stderr saying how many and why (the first line of each different error, most common first)."""
    if not final.get("failed"):
        return 0
    print(f"kbit submit: {failed_summary(sweep_id, final, failures, shown)}", file=sys.stderr)
    return 1

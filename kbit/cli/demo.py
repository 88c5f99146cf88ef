"""`kbit demo`: the whole service on one machine in minutes.

Builds (or reuses) the bundled model family, submits the demo sweep to an embedded Ray cluster
with SQLite (the same scheduler and workers a real cluster runs), follows it live, and prints
the frontier summary: for each bit budget, the best k / data type / block size and its score.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kbit import errors, settings
from kbit.analysis import Interval, better_word, verdict_text
from kbit.cli import progress
from kbit.cli.output import kbit_command
from kbit.cli.progress import finish
from kbit.cli.report import DEFAULT_METRICS, analysed_sections, interval_text, load_findings, render_report
from kbit.cli.tokens import save_token, token_file
from kbit.cluster.client import RayService
from kbit.db import session_scope, teams
from kbit.errors import SweepError
from kbit.family import family_members
from kbit.service import Operations
from kbit.sweeps.modelids import bundled_parts
from kbit.sweeps.reader import load_sweep
from kbit.sweeps.sweep import family_entries

DEMO_TEAM = "demo"
TASK, METRIC = "mean_zero_shot", "acc"
# Held-out bits per byte beside accuracy: on the small bundled family it is the sharper signal.
SUMMARY_METRICS = ((TASK, METRIC), ("kbit_heldout", "bits_per_byte"))


def default_sweep_path() -> Path:
    """The demo sweep ships inside the package (examples/demo.yaml links to it)."""
    return Path(__file__).resolve().parent / "demo.yaml"


def demo_team(engine) -> tuple[str, str]:
    """The demo team and its token, created on first use and kept in $KBIT_HOME/demo-token (where
    `kbit submit` finds it when KBIT_TOKEN is not set)."""
    path = token_file(DEMO_TEAM)
    with session_scope(engine) as s:
        if path.exists():
            token = path.read_text().strip()
            try:
                teams.verify_token(s, DEMO_TEAM, token)
                return DEMO_TEAM, token
            except errors.AuthError:
                pass
        try:
            token = teams.create_team(s, DEMO_TEAM)
        except errors.Conflict:
            token = teams.rotate_token(s, DEMO_TEAM)
    save_token(DEMO_TEAM, token)
    return DEMO_TEAM, token


def with_family(sweep, family: str):
    """The same grid over every member of another bundled family (e.g. micro for a quick check)."""
    try:
        members = family_members(family)
    except ValueError as exc:
        raise SweepError("--family", [str(exc)]) from None
    return dataclasses.replace(sweep, models=tuple(family_entries(members)), name=f"{sweep.name}-{family}")


def build_families(sweep, out: Console) -> None:
    """Build the bundled models here, before the sweep starts, so parallel workers find them ready
    (and the build shows its progress here, not in a worker's log)."""
    from kbit.family import ensure_model

    for model in (m.model for m in sweep.models if bundled_parts(m.model)):
        started = time.perf_counter()
        out.print(f"model {model}: ", end="")
        path = ensure_model(model)
        out.print(f"ready ({time.perf_counter() - started:.0f} s) at {path}")


def frontier_summary(engine, sweep_id: int, task: str = TASK, metric: str = METRIC):
    """From the database: `kbit.analysis.findings` of this sweep's runs for task/metric."""
    with session_scope(engine) as s:
        return load_findings(s, task, metric, sweeps=[sweep_id])


def summary_table(found, task: str = TASK, metric: str = METRIC) -> Table:
    """The precisions at equal bits: each k's score per budget, the winner when decided."""
    table = Table(title=f"which precision wins at equal total bits ({task}/{metric}, {better_word(metric)} is better)")
    groups = found.precision.groups
    for column in ("budget (Mbit)", *groups, "winner", "margin [95% simultaneous band]"):
        table.add_column(column)
    for row in found.budgets.to_dict("records"):
        winner = row.get("winner") if isinstance(row.get("winner"), str) else None
        verdict = verdict_text(winner, row["decided"], row["missing"]) + (f" ({row['winner_label']})" if winner and row["decided"] else "")
        margin = interval_text(Interval(row["margin"], row["margin_low"], row["margin_high"])) if winner else "–"
        table.add_row(f"{row['budget_bits'] / 1e6:.3f}", *[f"{row[g]:.4f}" if row[g] == row[g] else "–" for g in groups],
                      verdict, margin)
    return table


def published_results() -> Path | None:
    """docs/RESULTS.md of the checkout kbit runs from (an installed wheel has none)."""
    path = Path(__file__).resolve().parents[2] / "docs" / "RESULTS.md"
    return path if path.is_file() else None


def write_results(engine, sweep_id: int, out: Console, compare_with: Path | None) -> Path:
    """$KBIT_HOME/RESULTS.md from this sweep's runs (what `kbit report` writes), and whether it is
    identical to the published one: the same weights and code give the same file on every machine."""
    with session_scope(engine) as s:
        text = render_report(analysed_sections(s, DEFAULT_METRICS, sweeps=[sweep_id]))
    path = settings.kbit_home() / "RESULTS.md"
    path.write_text(text)
    out.print(f"wrote the report: {path}")
    if compare_with is not None:
        theirs = compare_with.read_text().splitlines()
        differing = [i for i, (a, b) in enumerate(itertools.zip_longest(text.splitlines(), theirs)) if a != b]
        if differing:
            out.print(f"it differs from {compare_with} in {len(differing)} of {len(theirs)} lines "
                      f"(first at line {differing[0] + 1}): `diff {compare_with} {path}`")
        else:
            out.print(f"it is identical to {compare_with}, digit for digit")
    return path


def findings_lines(found) -> list[str]:
    return [f"{x.claim}: {x.verdict} (margin {interval_text(x.margin)})" for x in found.findings]


def run_demo(sweep_path: str | None, family: str | None, out: Console) -> int:
    path = Path(sweep_path) if sweep_path else default_sweep_path()
    sweep = load_sweep(path, family_members=family_members)
    if family:
        sweep = with_family(sweep, family)
    out.print(f"kbit demo: {sweep.n_runs} runs ({len(sweep.models)} models x {len(sweep.configs)} configs), "
              f"data in {settings.kbit_home()}")
    started = time.perf_counter()
    build_families(sweep, out)
    built = time.perf_counter()
    with Operations.open() as local:
        team, token = demo_team(local.engine)
        with RayService(None) as svc:
            reply = svc.submit(sweep.spec(), team, token, "demo")
            out.print(progress.submitted_line(reply))
            finish(svc, reply["sweep_id"], out)
        swept = time.perf_counter()
        summaries = [(task, metric, frontier_summary(local.engine, reply["sweep_id"], task, metric))
                     for task, metric in SUMMARY_METRICS]
        for task, metric, found in summaries:
            if not found.n_runs:
                continue
            out.print(summary_table(found, task, metric))
            for line in findings_lines(found):
                out.print(line)
        # Only the default demo is what docs/RESULTS.md publishes.
        write_results(local.engine, reply["sweep_id"], out, published_results() if not (sweep_path or family) else None)
    out.print(f"phases: model family {progress.format_seconds(built - started)}, "
              f"sweep {progress.format_seconds(swept - built)} (embedded Ray start included), "
              f"total {progress.format_seconds(time.perf_counter() - started)}")
    kbit = kbit_command()
    if not summaries[0][2].n_runs:
        out.print(f"no finished runs with a mean zero-shot accuracy: see `{kbit} status` for failures")
    out.print(f"open the dashboard on these results: {kbit} dashboard   (then http://127.0.0.1:8501)")
    out.print(f"submit more as team {team}: {kbit} submit examples/micro.yaml --wait   (with KBIT_TOKEN unset it "
              f"uses the token kept in {token_file(team)}; elsewhere: export KBIT_TOKEN=$(cat {token_file(team)}))")
    return 0

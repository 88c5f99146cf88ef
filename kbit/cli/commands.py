"""What each `kbit` command does (the parser and the error wrapper are in main.py)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from kbit import settings
from kbit.cli import export, localcluster, progress
from kbit.cli.demo import run_demo
from kbit.cli.output import console, write_output
from kbit.cli.progress import failed_exit, finish
from kbit.cli.tokens import require_token, save_token, token_file
from kbit.cluster.client import RayService
from kbit.cluster.connect import resolve_address
from kbit.db import mask_url
from kbit.errors import UsageError
from kbit.family import family_members
from kbit.service import Operations
from kbit.service.gateway_client import HttpService
from kbit.sweeps.modelids import is_local_path
from kbit.sweeps.reader import load_sweep


def require_team(args, sweep=None) -> str:
    team = getattr(args, "team", None) or (sweep.team if sweep else None) or settings.team()
    if not team:
        raise UsageError("no team given; pass --team NAME, set `team:` in the sweep file, or export KBIT_TEAM")
    return team


def cluster_address(args) -> str | None:
    return resolve_address(getattr(args, "address", None), localcluster.running_address())


def is_gateway(address: str | None) -> bool:
    return bool(address) and address.startswith(("http://", "https://"))


def service_at(address: str | None):
    """The operations at `address`: the submit gateway (http://), a Ray cluster (ray://), or, with
    no address, this machine's database."""
    if is_gateway(address):
        return HttpService(address)
    return RayService(address) if address else Operations.open()


def reader(args):
    """Where read-only commands get their data (see service_at)."""
    return service_at(cluster_address(args))


# -- commands ----------------------------------------------------------------------------------


def missing_local_paths(sweep) -> list[str]:
    """The sweep's local model folders and calibration file (kbit.sweeps.modelids.is_local_path)
    that do not exist on this machine."""
    paths = [m.model for m in sweep.models]
    if sweep.calibration is not None and sweep.calibration.is_file:
        paths.append(sweep.calibration.source)
    return [p for p in dict.fromkeys(paths) if is_local_path(p) and not Path(p).expanduser().exists()]


def cmd_submit(args) -> int:
    sweep = load_sweep(args.file, family_members=family_members)
    team = require_team(args, sweep)
    out = console()
    for path in missing_local_paths(sweep):
        print(f"kbit submit: warning: {path} does not exist on this machine; its runs fail unless the workers "
              "have it at that path", file=sys.stderr)
    if args.check:
        out.print(f"{args.file}: valid. {len(sweep.models)} models x {len(sweep.configs)} configs = {sweep.n_runs} runs "
                  f"over tasks {', '.join(sweep.eval.tasks)} (team {team})")
        return 0
    token = require_token(team)
    address = cluster_address(args)
    if address is None:
        # Embedded: check the token before starting Ray, so a wrong one fails fast and writes nothing.
        from kbit.db import session_scope, teams

        with Operations.open() as local, session_scope(local.engine) as s:
            teams.verify_token(s, team, token)
    with HttpService(address) if is_gateway(address) else RayService(address) as svc:
        reply = svc.submit(sweep.spec(), team, token, getpass.getuser())
        where = "" if svc.mode == "embedded" else f", {'through' if is_gateway(address) else 'on'} {address}"
        out.print(progress.submitted_line(reply) + where)
        if svc.mode == "embedded" or args.wait:
            if svc.mode == "embedded" and not args.wait:
                out.print("no cluster given: running it here (embedded) until it finishes")
            final, failures = finish(svc, reply["sweep_id"], out)
            return failed_exit(reply["sweep_id"], final, failures)
        out.print(f"follow it with: kbit status {reply['sweep_id']}" + (f" --address {args.address}" if args.address else ""))
    return 0


def cmd_status(args) -> int:
    out = console()
    with reader(args) as svc:
        if args.sweep is None:
            sweeps = svc.sweeps(args.team)
            if not sweeps:
                out.print("no sweeps yet; submit one with `kbit submit FILE` or run `kbit demo`")
            else:
                out.print(progress.sweeps_table(sweeps))
            if hasattr(svc, "workers"):  # a Ray cluster: its workers per node
                workers = svc.workers()
                out.print(progress.workers_table(workers) if workers else "no workers running (none is needed now)")
            return 0
        counts = svc.progress(args.sweep)
        out.print(progress.counts_table(counts, f"sweep {args.sweep}: {progress.describe(counts)}"))
        if counts["failed"]:
            out.print(progress.failures_table(svc.failures(args.sweep)))
    return 0


def cmd_cancel(args) -> int:
    team = require_team(args)
    token = require_token(team)
    with reader(args) as svc:
        counts = svc.cancel(args.sweep, team, token)
    console().print(f"sweep {args.sweep} cancelled: {progress.describe(counts)}")
    return 0


def cmd_results(args) -> int:
    if args.action == "import":
        return import_results(args)
    if args.file:
        raise UsageError(f"unexpected argument {args.file!r}; to load a file use `kbit results import {args.file}`")
    with reader(args) as svc:
        rows = svc.results(args.sweep)
    write_output(export.render(rows, args.format), args.output)
    if args.output and args.output != "-":
        print(f"wrote {len(rows)} runs to {args.output}", file=sys.stderr)
    return 0


def import_results(args) -> int:
    """`kbit results import FILE`: check every row, then write them all as one new sweep, or nothing."""
    from kbit.db import importruns, session_scope, teams
    from kbit.db.newruns import sha256_hex
    from kbit.sweeps import resultsfile

    if not args.file:
        raise UsageError("no file given; use `kbit results import FILE --team NAME`")
    path = Path(args.file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}; check the path") from None
    runs, skipped = resultsfile.check_rows(text)
    team = require_team(args)
    token = require_token(team)
    name = args.name or path.stem
    with Operations.open() as local, session_scope(local.engine) as s:
        teams.verify_token(s, team, token)
        sweep_id = importruns.import_runs(s, team, name, runs, sha256_hex(text), source=path.name)
    print(f"imported {len(runs)} finished runs as sweep {sweep_id} ({name!r} of team {team})"
          + (f"; skipped {skipped} unfinished" if skipped else ""))
    return 0


def cmd_team(args) -> int:
    from kbit.db import session_scope, teams

    try:
        with Operations.open() as local, session_scope(local.engine) as s:
            if args.team_command == "priority":
                teams.set_max_priority(s, args.name, args.max_priority)
                print(f"team {args.name} may now submit sweeps at priority up to {args.max_priority}")
                return 0
            if args.team_command == "rotate":
                token = teams.rotate_token(s, args.name)
            else:
                token = teams.create_team(s, args.name, max_priority=args.max_priority)
    except ValueError as exc:  # a name or number out of range: the message names it
        raise UsageError(str(exc)) from None
    done = "created" if args.team_command == "create" else "has a new token; the old one no longer works"
    print(f"team {args.name} {done}. Its token (shown only this once):\n{token}\n")
    if args.team_command == "rotate" and token_file(args.name).exists():
        print(f"(also written to {save_token(args.name, token)}, where kbit looks when KBIT_TOKEN is not set)")
    print(f"export KBIT_TEAM={args.name} KBIT_TOKEN={token}")
    return 0


def cmd_demo(args) -> int:
    return run_demo(args.sweep, args.family, console())


def cmd_report(args) -> int:
    from kbit.cli.report import DEFAULT_METRICS, analysed_sections, render_report, report_json
    from kbit.db import queries, session_scope

    if args.compare:
        from kbit.cli.report import compare_report

        with Operations.open() as local, session_scope(local.engine) as s:
            text = compare_report(s, args)
        write_output(text, args.output or "-")
        return 0
    as_json = args.format == "json"
    wanted = args.metric or list(DEFAULT_METRICS[:1] if as_json else DEFAULT_METRICS)
    bad = [m for m in wanted if "/" not in m]
    if bad:
        raise UsageError(f"--metric {bad[0]!r} is not TASK/METRIC; use e.g. --metric kbit_heldout/bits_per_byte")
    if as_json and len(wanted) > 1:
        raise UsageError("--format json reports one metric; give one --metric (or run it once per metric)")
    with Operations.open() as local, session_scope(local.engine) as s:
        available = {f"{t}/{m}" for t, m in queries.list_metrics(s)}
        unknown = [m for m in args.metric or () if m not in available]
        if unknown:
            raise UsageError(f"no finished run has {unknown[0]}; metrics in the database: "
                             + (", ".join(sorted(available)) or "none yet (run `kbit demo`)"))
        analysed = analysed_sections(s, wanted, args.sweep, x_axis=args.x_axis, method=args.method)
    if as_json:  # one object, or a list of them: one per family and rounding method
        found = [report_json(*section) for section in analysed]
        text = json.dumps(found[0] if len(found) == 1 else found, indent=2, default=float) + "\n"
        write_output(text, args.output or "-")
        return 0
    if args.output is None:
        settings.kbit_home().mkdir(parents=True, exist_ok=True)
    output = args.output or str(settings.kbit_home() / "RESULTS.md")
    write_output(render_report(analysed), output)
    if output != "-":
        print(f"wrote {output}", file=sys.stderr)
    return 0


def cmd_dashboard(args) -> int:
    cmd = [sys.executable, "-m", "kbit.dashboard", "--host", args.host, "--port", str(args.port)]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    print(f"dashboard on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    sys.stderr.flush()
    # Become the dashboard (no parent left behind): a signal sent to this pid reaches Streamlit itself.
    os.execv(cmd[0], cmd)


def cmd_up(args) -> int:
    state = localcluster.up(
        gcs_port=args.port, client_port=args.client_port, dashboard_port=args.dashboard_port,
        num_cpus=args.num_cpus, dashboard=not args.no_dashboard,
    )
    print(f"kbit is up: Ray client at {state['address']}, database {state['database']}")
    if state["dashboard_url"]:
        print(f"dashboard: {state['dashboard_url']}")
    print("`kbit submit FILE --team T --wait` now runs there; `kbit down` stops it")
    return 0


def cmd_down(args) -> int:
    if not localcluster.down():
        print("no local kbit service was running")
    return 0


def cmd_gateway(args) -> int:
    from kbit.service.gateway import serve

    ops = Operations.open(args.database_url)
    print(f"kbit gateway on http://{args.host}:{args.port} (database {mask_url(str(ops.engine.url))}; "
          "API description at /docs); Ctrl-C stops it", file=sys.stderr)
    try:
        serve(ops, args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        ops.close()
    return 0


def cmd_serve(args) -> int:
    info = localcluster.start_scheduler(args.address, settings.database_url_given())
    print(f"kbit scheduler running (database {info['database']}, capacity {info['capacity']})")
    return 0

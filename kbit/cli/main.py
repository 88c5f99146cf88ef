"""The `kbit` command line: parser, help texts, and the wrapper that turns every user error into
one clear line and a non-zero exit (the commands themselves live in commands.py; the environment
variables in kbit.settings)."""

from __future__ import annotations

import argparse
import importlib
import sys

from kbit import settings
from kbit.analysis.equalbits import X_AXES
from kbit.cli import exportmodel, familybuild
from kbit.errors import KbitError

EPILOG = """\
examples:
  kbit team create nlp                                   # prints the team's token once
  kbit team rotate nlp                                   # a new token for the team (the old one stops working)
  export KBIT_TOKEN=...                                  # the token of your team
  kbit submit examples/demo.yaml --team nlp --wait       # embedded: runs here, on this machine
  kbit submit examples/pythia.yaml --team nlp --address ray://head:10001
  kbit status                                            # every sweep (and on a cluster its workers per node); `kbit status 3` for one
  kbit results --sweep 3 --format csv --output runs.csv
  kbit results import runs.json --team nlp --name baseline   # a file of `kbit results --format json`
  kbit cancel 3 --team nlp
  kbit demo                                              # the whole thing on a laptop, in minutes
  kbit up && kbit submit examples/demo.yaml --team nlp --wait && kbit down

"""


def _environment() -> str:
    """The first four of kbit.settings.VARIABLES: what a user (not an operator) sets."""
    lines = ["environment (every variable: docs/operations.md):"]
    lines += [f"  {name:<22} {meaning}; default {default}" for name, default, meaning in settings.VARIABLES[:4]]
    return "\n".join(lines) + "\n"


def command(sub, name: str, handler: str, **kwargs) -> argparse.ArgumentParser:
    """Register one command: its parser and the function that runs it, `module:function` in kbit.cli
    (imported only when that command runs, so `kbit --help` does not load Ray or torch)."""
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(handler=handler)
    return p


def run_handler(handler: str, args) -> int:
    module, function = handler.split(":")
    return getattr(importlib.import_module(f"kbit.cli.{module}"), function)(args) or 0


def _address_arg(p):
    p.add_argument("--address", metavar="ray://HOST:PORT|http://HOST:PORT",
                   help="a Ray cluster, or a submit gateway (http://); default: $KBIT_RAY_ADDRESS, else `kbit up`'s "
                   "service, else embedded")


def _team_arg(p, help_text="team name (default: the sweep file's team, else $KBIT_TEAM)"):
    p.add_argument("--team", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbit",
        description="k-bit inference scaling laws as a service: which precision, data type and block size "
        "gives the most accurate model at a fixed budget of memory bits?",
        epilog=EPILOG + _environment(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = command(sub, "submit", "commands:cmd_submit", help="validate a sweep file and submit it", epilog=EPILOG + _environment(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Validate a sweep file (every problem at once, nothing written on error) and hand "
                       "it to the scheduler. Without a cluster it runs embedded and waits. The token comes from "
                       "$KBIT_TOKEN.")
    p.add_argument("file", help="sweep file (YAML), e.g. examples/demo.yaml")
    _team_arg(p)
    _address_arg(p)
    p.add_argument("--wait", action="store_true", help="follow progress until the sweep finishes, then summarize")
    p.add_argument("--check", action="store_true", help="only validate the file and print what would run")

    p = command(sub, "status", "commands:cmd_status", help="sweeps with their run counts and, on a cluster, its workers per node "
                       "(GPU share, model, runs, loaded models); or one sweep's progress and failures")
    p.add_argument("sweep", nargs="?", type=int, help="sweep id (default: list all sweeps)")
    p.add_argument("--team", help="only this team's sweeps")
    _address_arg(p)

    p = command(sub, "cancel", "commands:cmd_cancel", help="cancel a sweep of your team (queued runs stop now, running ones after their config)")
    p.add_argument("sweep", type=int, help="sweep id")
    _team_arg(p, "your team (default: $KBIT_TEAM); the token comes from $KBIT_TOKEN")
    _address_arg(p)

    p = command(sub, "results", "commands:cmd_results", help="one row per run (config, bits, status, metrics) as CSV or JSON; "
                       "`kbit results import FILE` loads such a JSON file")
    p.add_argument("action", nargs="?", choices=("import",),
                   help="import: load FILE (written by `kbit results --format json`) as a new sweep of --team")
    p.add_argument("file", nargs="?", help="the JSON file to import")
    p.add_argument("--team", help="import: the team the runs go to (default $KBIT_TEAM; token from $KBIT_TOKEN)")
    p.add_argument("--name", help="import: the new sweep's name (default: the file's name)")
    p.add_argument("--sweep", type=int, help="only this sweep (default: all runs)")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
    _address_arg(p)

    p = command(sub, "team", "commands:cmd_team", help="manage teams (needs the database: KBIT_DATABASE_URL or KBIT_HOME)")
    team_sub = p.add_subparsers(dest="team_command", metavar="ACTION", required=True)
    t = team_sub.add_parser("create", help="create a team and print its token (shown only once)")
    t.add_argument("name", help="team name: letters, digits, '_', '-', '.'")
    t.add_argument("--max-priority", type=int, default=0, help="highest sweep priority the team may use (-10..10, default 0)")
    t = team_sub.add_parser("rotate", help="issue a team a new token and print it (shown only once; the old one "
                            "stops working)")
    t.add_argument("name", help="team name")
    t = team_sub.add_parser("priority", help="set the highest sweep priority a team may use (an operator's decision)")
    t.add_argument("name", help="team name")
    t.add_argument("max_priority", type=int, help="-10..10")

    p = command(sub, "demo", "commands:cmd_demo", help="build the small model family, run the demo sweep embedded, print the frontier",
                       description="Builds (or reuses) the bundled model family, submits the demo sweep to an "
                       "embedded Ray cluster with SQLite, shows live progress, and prints the best "
                       "k/data type/block size per bit budget. Re-running reuses cached results.")
    p.add_argument("--sweep", metavar="FILE", help="sweep file (default: the bundled demo sweep, examples/demo.yaml)")
    p.add_argument("--family", help="run the sweep's grid over this bundled family instead (e.g. micro)")

    p = command(sub, "report", "commands:cmd_report", help="write the results report (winners per budget, frontier, paper verdicts)")
    p.add_argument("--output", "-o", help="file to write (default $KBIT_HOME/RESULTS.md; - for stdout; "
                   "docs/RESULTS.md to refresh the committed report)")
    p.add_argument("--metric", action="append", metavar="TASK/METRIC",
                   help="metric to report (repeatable; default mean_zero_shot/acc and kbit_heldout/bits_per_byte)")
    p.add_argument("--sweep", type=int, action="append", help="only these sweeps (repeatable; default all)")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown",
                   help="markdown (default, to $KBIT_HOME/RESULTS.md) or json (one metric, to stdout)")
    p.add_argument("--method", choices=("rtn", "gptq"),
                   help="only this rounding method's runs (and the 16-bit ones); default: one analysis per method")
    p.add_argument("--x-axis", choices=X_AXES, default="total",
                   help="bits compared: total model bits as stored (default), the quantized weights' bits only, or "
                   "the paper's (every parameter at the config's bits per parameter)")
    p.add_argument("--compare", metavar="A,B",
                   help="compare two teams or sweeps instead (team:nlp,team:vision or sweep:3,sweep:5): verdicts "
                   "'A better' / 'B better' / 'undecided' at equal bits, per k and per shared config; to stdout")

    p = command(sub, "dashboard", "commands:cmd_dashboard", help="open the results dashboard (Streamlit)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--database-url", metavar="URL", help="database to read (default: $KBIT_DATABASE_URL, else SQLite under $KBIT_HOME)")

    p = command(sub, "up", "commands:cmd_up", help="start a local Ray head, the scheduler and the dashboard on this machine")
    p.add_argument("--port", type=int, default=6380, help="Ray head (GCS) port; default 6380 (6379 is Redis's)")
    p.add_argument("--client-port", type=int, default=10001, help="Ray client port (default 10001)")
    p.add_argument("--dashboard-port", type=int, default=8501, help="dashboard port (default 8501)")
    p.add_argument("--num-cpus", type=int, help="CPUs the head offers to runs (default: all)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")

    command(sub, "down", "commands:cmd_down", help="stop what `kbit up` started")

    p = command(sub, "gateway", "commands:cmd_gateway", help="serve the submit gateway: sweeps over HTTP, no Ray port for teams (docs/security.md)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--database-url", metavar="URL", help="the database (default: $KBIT_DATABASE_URL, else SQLite under $KBIT_HOME)")

    exportmodel.add_parser(sub)
    familybuild.add_parser(sub)

    p = command(sub, "serve", "commands:cmd_serve", help="start the scheduler on a running cluster (used on the head, e.g. by docker compose)")
    p.add_argument("--address", default="auto", help="cluster address to join as a driver (default: auto)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_handler(args.handler, args)
    except (KbitError, FileNotFoundError, PermissionError, TimeoutError) as exc:
        message = str(exc).strip() or type(exc).__name__
        print(f"kbit {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"kbit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if settings.debug():
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"kbit {args.command}: unexpected error: {type(exc).__name__}: {first} (set KBIT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

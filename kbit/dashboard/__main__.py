"""`python -m kbit.dashboard [--host H] [--port P] [--database-url URL]`: serve the dashboard with
`streamlit run`, headless. The database is --database-url, else $KBIT_DATABASE_URL, else kbit.db's
default (SQLite under $KBIT_HOME)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def streamlit_command(host: str, port: int) -> list[str]:
    """The `streamlit run` command line for the dashboard."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",  # no "Deploy" button: this is a served app, not a dev session
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kbit.dashboard", description="Serve the kbit dashboard.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--database-url", help="database to read (default: $KBIT_DATABASE_URL or SQLite under $KBIT_HOME)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port; pick one in 1..65535")
    if args.database_url:
        os.environ["KBIT_DATABASE_URL"] = args.database_url
    command = streamlit_command(args.host, args.port)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()

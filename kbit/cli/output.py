"""The CLI's output: the console every command prints to, how to name the kbit command in a hint,
and writing a report or table to stdout or whole to a file."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from rich.console import Console

from kbit.errors import UsageError


def console() -> Console:
    # Piped output (logs, tests) gets long lines instead of wrapping at 80 columns.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def kbit_command() -> str:
    """How to run kbit from here: `kbit` when that is on PATH, else the path this one was started
    by (e.g. .venv/bin/kbit after `make demo`)."""
    started = Path(sys.argv[0])
    if started.name != "kbit":
        return f"{sys.executable} -m kbit.cli.main"
    on_path = shutil.which("kbit")
    if on_path and Path(on_path).resolve() == started.resolve():
        return "kbit"
    return os.path.relpath(started) if not started.is_absolute() or Path.cwd() in started.parents else str(started)


def write_output(text: str, output: str | None) -> None:
    """To stdout, or to a file written whole (a temp file renamed into place)."""
    if not output or output == "-":
        sys.stdout.write(text)
        return
    path = Path(output)
    if path.parent and not path.parent.exists():
        raise UsageError(f"cannot write {output}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)

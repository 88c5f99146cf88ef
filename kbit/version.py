"""The code version that goes into cache keys and provenance: package version plus git sha."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from kbit import __version__


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """'0.1.0+g1a2b3c4' inside a git checkout (with '.dirty' for local changes), else '0.1.0'."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__

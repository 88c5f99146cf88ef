"""Two versions of the code, for two purposes.

- `numerics_version()` goes into every run's cache key: a hash of the source files that decide a
  result (`NUMERICS_SOURCES`: the kernels, how a model is loaded, quantized and evaluated, the
  bundled family and its tasks, the eval spec), read from the installed package itself. It changes
  when, and only when, one of those files changes, committed or not; it is the same in a checkout
  and in an installed wheel of the same files (no git involved), and a README or dashboard edit
  leaves every key as it was.
- `code_version()` is provenance (stored on each sweep and each result): the package version plus,
  in a git checkout, the commit and '.dirty' when tracked files have local changes.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

from kbit import __version__

PACKAGE = Path(__file__).resolve().parent
# Files (globs relative to the kbit package) whose content decides a run's result ...
NUMERICS_SOURCES = (
    "kernels/*.py",
    "workers/*.py",
    "family/*.py",
    "family/tasks/*.py",
    "family/tasks/*.yaml",
    "family/weights/*/*/kbit-build.json",  # each holds its weights' sha256: other weights, other keys
    "sweeps/evalspec.py",
)
# ... less those that only carry a finished result elsewhere (`kbit export`'s format and path).
NOT_NUMERICS = ("kernels/checkpoint.py", "workers/export.py")


def numerics_files(package: Path = PACKAGE) -> list[str]:
    """The files `numerics_version` hashes: paths relative to the package, sorted."""
    found = {path.relative_to(package).as_posix() for pattern in NUMERICS_SOURCES for path in package.glob(pattern)
             if path.is_file()}
    return sorted(found - set(NOT_NUMERICS))


def numerics_version(package: Path = PACKAGE) -> str:
    """'numerics-1a2b3c4d5e6f7a8b': sha256 over each numerics file's relative path and the sha256 of its
    bytes, in sorted order (first 16 hex digits). Read from the files now (a few hundred KB), so an
    edit shows at the next submit; `package`: another copy of the kbit package."""
    digest = hashlib.sha256()
    for name in numerics_files(package):
        digest.update(name.encode() + b"\0" + hashlib.sha256((package / name).read_bytes()).digest())
    return "numerics-" + digest.hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def code_version(root: Path = PACKAGE.parent) -> str:
    """'0.1.0+g1a2b3c4d5e' inside a git checkout ('0.1.0+g1a2b3c4d5e.dirty' with local changes to
    tracked files), else '0.1.0' (an installed wheel). `root`: the folder holding the package."""
    if not (root / ".git").exists():  # installed: a git repository around site-packages is not ours
        return __version__
    try:
        sha = _git(root, "rev-parse", "--short=10", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return __version__
    if not sha:
        return __version__
    return f"{__version__}+g{sha}" + (".dirty" if dirty else "")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5).stdout.strip()

"""Every environment variable kbit reads, its default, and the names every part shares.

Nothing else in kbit reads `KBIT_*` variables: call these functions (they read the environment
each time, so a test or a worker that sets a variable sees it at once). This module imports
nothing of kbit but `errors`, so every part may use it.

The variables, their meaning and defaults are `VARIABLES` below, the one list of them
(`python -m kbit.settings` prints it as the markdown table docs/operations.md holds).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kbit.errors import UsageError

LEASE_SECONDS = 120.0  # KBIT_LEASE_SECONDS unset: how long a claimed run is held without a heartbeat
MAX_ATTEMPTS = 3  # a sweep's `max_attempts` unset: tries per run when workers die
MAX_RUNS_PER_GROUP = 16  # KBIT_MAX_RUNS_PER_GROUP unset
GROUP_SECONDS = 30.0  # KBIT_GROUP_SECONDS unset

# (name, default, meaning): every KBIT_* variable kbit reads. docs/operations.md shows this table
# (a test keeps it equal) and `kbit --help` the first four.
VARIABLES = (
    ("KBIT_HOME", "~/.kbit", "data folder: SQLite database, bundled models, logs, `kbit up`'s state"),
    ("KBIT_DATABASE_URL", "SQLite under KBIT_HOME", "SQLAlchemy URL of the results database, e.g. "
     "postgresql+psycopg://user:pw@host:5432/kbit"),
    ("KBIT_RAY_ADDRESS", "`kbit up`'s service, else embedded", "ray://HOST:PORT of a cluster"),
    ("KBIT_TEAM, KBIT_TOKEN", "none", "the caller's team and its API token (else the file $KBIT_HOME/<team>-token)"),
    ("KBIT_LEASE_SECONDS", f"{LEASE_SECONDS:g}", "how long a run stays claimed without a heartbeat (the recovery delay when a "
     "worker hangs or loses the database)"),
    ("KBIT_MAX_RUNS_PER_GROUP", str(MAX_RUNS_PER_GROUP), "most runs one group (one worker, one model) takes, unless its runs are "
     "short (KBIT_GROUP_SECONDS); the queue is also split "
     "evenly over the cluster's slots, so the last model never runs on one worker while the others idle"),
    ("KBIT_GROUP_SECONDS", f"{GROUP_SECONDS:g}", "a model whose runs were measured shorter than KBIT_GROUP_SECONDS / "
     "KBIT_MAX_RUNS_PER_GROUP each gets groups lasting about KBIT_GROUP_SECONDS, of up to 16 x KBIT_MAX_RUNS_PER_GROUP runs "
     "(fewer claims and scheduler rounds per run), not split below half that at the tail of the queue; 0: off"),
    ("KBIT_POLL_SECONDS", "0.5", "the scheduler's round interval"),
    ("KBIT_VACUUM_S", "10", "on a Postgres with autovacuum off, the scheduler vacuums the runs table this often; "
     "0: never"),
    ("KBIT_MAX_RUNS_PER_SWEEP", "20000", "most runs one sweep may expand to (an operator's limit, checked at submit)"),
    ("KBIT_TEAM_MAX_RUNNING", "no quota", "most runs one team may have running at once (an operator's quota); "
     "within a priority the team with the fewest running runs is served first"),
    ("KBIT_GPU_MEMORY_GB", "80", "memory of one GPU, used to pack models onto GPUs until a worker has measured its own"),
    ("KBIT_WORKER_CACHE_GB", "half the worker's GPU share; 4 on CPU", "models a worker keeps loaded beside the one "
     "it evaluates"),
    ("KBIT_WORKER_IDLE_S", "60", "a worker with nothing to do for this long gives its GPU share back"),
    ("KBIT_DASHBOARD_TTL", "30", "seconds the dashboard caches a query"),
    ("KBIT_DASHBOARD_REFRESH_S", "5", "the queue page's refresh interval"),
    ("KBIT_DASHBOARD_WARM_SWEEPS", "10", "the dashboard computes the Frontier page of this many newest finished "
     "sweeps, and of their model families, before anyone asks (its default metric); 0: only when asked"),
    ("KBIT_DASHBOARD_MAX_RUNS", "250000", "most finished runs one dashboard view analyses (its memory stays under 1 GB); "
     "a view over more asks for a sweep, family or team"),
    ("KBIT_FAMILY_WEIGHTS", "shipped", "bundled models: `shipped` (16-bit weights in the package, the same on every "
     "machine) or `build` (trained here under KBIT_HOME)"),
    ("KBIT_DEBUG", "off", "show tracebacks of unexpected errors"),
)


def variables_table() -> str:
    """VARIABLES as a markdown table (docs/operations.md)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in VARIABLES]
    return "\n".join(rows) + "\n"


# What a run stores of a model's bit accounting (kbit.kernels.BitReport has these and more).
BIT_FIELDS = ("n_params", "n_quantized", "bits_per_param", "total_bits")

# A model trained with another of its training seeds is named `<model>@seed<N>` (`kbit/demo/s1@seed2`;
# seed 1, the model as named, has no suffix). kbit.sweeps.modelids builds and checks such ids of the
# bundled families; the analysis pools the seeds of one model into one point. One spelling, kept here.
SEED_MARK = "@seed"
_SEEDED = re.compile(re.escape(SEED_MARK) + r"([1-9][0-9]*)$")


def split_seed(model: str) -> tuple[str, int]:
    """'kbit/demo/s1@seed2' -> ('kbit/demo/s1', 2); an id without a seed suffix -> (the id, 1)."""
    found = _SEEDED.search(model) if isinstance(model, str) else None
    if found is None or found.start() == 0:
        return model, 1
    return model[: found.start()], int(found.group(1))


# Run states, in the order tables show them. FINAL: a run in one of these never changes again.
RUN_STATES = ("queued", "running", "done", "cached", "failed", "cancelled")
IN_FLIGHT_STATES = ("queued", "running")
FINAL_STATES = ("done", "cached", "failed", "cancelled")
SWEEP_STATES = ("active", "cancelled")

PRIORITIES = (-10, 10)  # sweep priorities: bounded, so no team can starve the others by outbidding them

RAY_NAMESPACE = "kbit"
SCHEDULER_NAME = "kbit-scheduler"

# What worker processes need to find the same models, caches and timings as the service that
# started them (a Ray worker does not inherit the driver's environment).
FORWARDED_ENV = ("KBIT_HOME", "KBIT_FAMILY_WEIGHTS", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "KBIT_LEASE_SECONDS", "KBIT_MAX_RUNS_PER_GROUP", "KBIT_GROUP_SECONDS", "KBIT_POLL_SECONDS", "KBIT_TEAM_MAX_RUNNING",
                 "KBIT_GPU_MEMORY_GB", "KBIT_WORKER_CACHE_GB", "KBIT_WORKER_IDLE_S")
WORKER_PREFIX = "kbit-worker"  # worker actors are named f"{WORKER_PREFIX}:{scheduler name}:{n}"


def _text(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _number(name: str, default: float, kind=float, allow_zero: bool = False):
    raw = _text(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number; unset it or give e.g. {name}={default}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name}={raw!r} must be {'0 or more' if allow_zero else 'positive'}; unset it or give e.g. "
                         f"{name}={default}")
    return value


def kbit_home(home: str | os.PathLike | None = None) -> Path:
    """The data folder: `home` when given, else $KBIT_HOME, else ~/.kbit."""
    return Path(home or _text("KBIT_HOME") or Path.home() / ".kbit").expanduser()


def database_url() -> str:
    """$KBIT_DATABASE_URL, else a SQLite file under KBIT_HOME."""
    return _text("KBIT_DATABASE_URL") or f"sqlite:///{kbit_home() / 'kbit.db'}"


def database_url_given() -> str | None:
    """$KBIT_DATABASE_URL when set (a client then names the database the cluster should use)."""
    return _text("KBIT_DATABASE_URL")


def ray_address() -> str | None:
    return _text("KBIT_RAY_ADDRESS")


def team() -> str | None:
    return _text("KBIT_TEAM")


def token() -> str | None:
    return _text("KBIT_TOKEN")


def debug() -> bool:
    return _text("KBIT_DEBUG") not in (None, "0", "false", "no")


def lease_seconds() -> float:
    return _number("KBIT_LEASE_SECONDS", LEASE_SECONDS)


def max_runs_per_group() -> int:
    return _number("KBIT_MAX_RUNS_PER_GROUP", MAX_RUNS_PER_GROUP, int)


def group_seconds() -> float:
    """How long a group of short runs should last (0: groups are always KBIT_MAX_RUNS_PER_GROUP)."""
    return _number("KBIT_GROUP_SECONDS", GROUP_SECONDS, allow_zero=True)


def max_runs_per_sweep() -> int:
    return _number("KBIT_MAX_RUNS_PER_SWEEP", 20_000, int)


def team_max_running() -> int | None:
    """The per-team quota of running runs, or None (no quota) when unset."""
    if _text("KBIT_TEAM_MAX_RUNNING") is None:
        return None
    return _number("KBIT_TEAM_MAX_RUNNING", 8, int)  # 8: only the example in a bad value's message


def poll_seconds() -> float:
    return _number("KBIT_POLL_SECONDS", 0.5)


def vacuum_seconds() -> float:
    return _number("KBIT_VACUUM_S", 10.0, allow_zero=True)


def gpu_memory_bytes() -> int:
    return int(_number("KBIT_GPU_MEMORY_GB", 80.0) * 2**30)


def worker_cache_bytes() -> int | None:
    """Bytes of models a worker keeps loaded between groups; None: the worker's default."""
    if _text("KBIT_WORKER_CACHE_GB") is None:
        return None
    return int(_number("KBIT_WORKER_CACHE_GB", 4.0) * 2**30)


def worker_idle_seconds() -> float:
    return _number("KBIT_WORKER_IDLE_S", 60.0)


def dashboard_ttl_seconds() -> float:
    return _number("KBIT_DASHBOARD_TTL", 30.0)


def dashboard_warm_sweeps() -> int:
    return int(_number("KBIT_DASHBOARD_WARM_SWEEPS", 10, kind=int, allow_zero=True))


def dashboard_max_runs() -> int:
    return int(_number("KBIT_DASHBOARD_MAX_RUNS", 250_000))


def dashboard_refresh_seconds() -> float:
    return _number("KBIT_DASHBOARD_REFRESH_S", 5.0)


def family_weights() -> str:
    """Where bundled models come from: 'shipped' (the package's own weights) or 'build' (trained here)."""
    value = _text("KBIT_FAMILY_WEIGHTS") or "shipped"
    if value not in ("shipped", "build"):
        raise UsageError(f"KBIT_FAMILY_WEIGHTS={value!r} must be 'shipped' or 'build'; unset it for the shipped weights")
    return value


def forwarded_env() -> dict:
    """The FORWARDED_ENV variables this process has, to hand to workers."""
    return {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}


if __name__ == "__main__":
    print(variables_table(), end="")

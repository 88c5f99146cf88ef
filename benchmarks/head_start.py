"""How often the first Ray client connect to a fresh head fails, and what it costs, with gRPC's fork
handlers on (gRPC's default) and off (`kbit.cli.localcluster.HEAD_ENV`, what `kbit up` and the
compose head use). Each round starts a head as `kbit up` does, connects once (with retries, as
every kbit command does), and stops it; the two settings alternate, round by round.

    .venv/bin/python -m benchmarks.head_start --rounds 10

The head's Ray client proxy forks a server process per client; with the handlers on, that child
sometimes dies at once (ray-project/ray#63202) and the client waits ~30-44 s before trying again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager


@contextmanager
def counted_tries():
    """Counts the Ray client connect tries made inside (one per `_client_connect` call)."""
    from kbit.cluster import connect

    tries = []
    original = connect._client_connect

    def counting(*args, **kwargs):
        tries.append(1)
        return original(*args, **kwargs)

    connect._client_connect = counting
    try:
        yield tries
    finally:
        connect._client_connect = original


def one_round(handlers_off: bool) -> dict:
    """A fresh head (own KBIT_HOME, SQLite), up to the scheduler's start; its connect's tries and time."""
    from kbit.cli import localcluster
    from tests.support.net import free_port

    saved = dict(localcluster.HEAD_ENV)
    home = tempfile.mkdtemp(prefix="kbit-head-start-")
    os.environ.update(KBIT_HOME=home, KBIT_DATABASE_URL=f"sqlite:///{home}/kbit.db")
    localcluster.HEAD_ENV.clear()
    if handlers_off:
        localcluster.HEAD_ENV.update(saved)
    started = time.monotonic()
    try:
        with counted_tries() as tries:
            localcluster.up(gcs_port=free_port(), client_port=free_port(), num_cpus=2, dashboard=False,
                            say=lambda *_: None)
        return {"tries": len(tries), "up_s": time.monotonic() - started}
    finally:
        localcluster.HEAD_ENV.clear()
        localcluster.HEAD_ENV.update(saved)
        localcluster.down(say=lambda *_: None)


def table(rows: dict[str, list[dict]]) -> str:
    lines = ["| gRPC fork handlers | heads | heads with a failed connect | failed tries | `up` median s | `up` max s |",
             "|---|---|---|---|---|---|"]
    for name, results in rows.items():
        failed = [r["tries"] - 1 for r in results]
        times = [r["up_s"] for r in results]
        lines.append(f"| {name} | {len(results)} | {sum(1 for f in failed if f)} | {sum(failed)} | "
                     f"{statistics.median(times):.1f} | {max(times):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10, help="heads started per setting (default 10)")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    rows: dict[str, list[dict]] = {"on (gRPC's default)": [], "off (HEAD_ENV)": []}
    for i in range(args.rounds):
        for name, off in (("on (gRPC's default)", False), ("off (HEAD_ENV)", True)):
            result = one_round(off)
            rows[name].append(result)
            print(f"round {i + 1}/{args.rounds}, handlers {name.split()[0]}: {result['tries']} tries, "
                  f"up {result['up_s']:.1f} s", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()

"""kbit's real queue through PgBouncer in transaction mode, from several processes: is every run
done exactly once, how many server connections did the workers need, and how long did it take.

    .venv/bin/python -m benchmarks.pgbouncer_check --pgbouncer /usr/sbin/pgbouncer \\
        --server postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Each mode gets a scratch database on the server (dropped after), migrated directly, and one sweep
of `--runs` runs over 8 models submitted through `Operations.submit`. Then `--workers` processes,
each with kbit's worker engine (`connect(url, upgrade=False, pool_size=1)`), claim groups
(`queue.claim_runs`, preferring the model they last held), renew and start them (`heartbeat`,
`mark_started`) and store each result in its own transaction (`complete_run`), while a scheduler
process makes its rounds (`requeue_expired`, `overdue_runs`, `holders`, `count_queued`,
`sweep_progress`). Mode `pooled` goes through a PgBouncer started here (transaction pooling, trust
auth, a free port, `--pool-size` server connections); mode `direct` is the same against Postgres,
for comparison. A monitor samples the server's backends on the scratch database (pg_stat_activity)
and PgBouncer's admin console (SHOW POOLS, SHOW SERVERS, SHOW STATS).

PgBouncer >= 1.21 keeps psycopg's prepared statements valid across server connections with
`--max-prepared-statements` > 0 (the compose file's setting); with an older PgBouncer pass
`--max-prepared-statements 0 --prepare-threshold none` (the client then never prepares), or see
the failure without `--prepare-threshold none`. Not part of the test suite: CI has no PgBouncer.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from benchmarks.scale import make_sweep
from tests.support.postgres import fresh_postgres

MODELS = 8
BATCH = (1, 8)  # runs per claim, drawn per claim like the concurrency test


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0] if lines else ''}"


def _client_prepares(threshold: str) -> None:
    """In this process, psycopg connections prepare after `threshold` executions, or never ('none')."""
    if threshold == "none":
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        event.listen(Pool, "connect", lambda dbapi_connection, _record: setattr(dbapi_connection, "prepare_threshold", None))
    elif int(threshold) != 5:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        event.listen(Pool, "connect",
                     lambda dbapi_connection, _record: setattr(dbapi_connection, "prepare_threshold", int(threshold)))


def _result(config: dict, run_id: int) -> dict:
    bits = config["bits"]
    n = 1000
    bpp = bits + (16 / config["blocksize"] if config.get("blocksize") else 0.0)
    return {
        "config": config, "status": "done", "error_type": None, "error": None,
        "metrics": [{"task": "none", "metric": "acc", "value": run_id / 1e6, "stderr": 0.01},
                    {"task": "none", "metric": "bpb", "value": 1 + run_id / 1e6, "stderr": 0.02}],
        "bits": {"n_params": n, "n_quantized": n - 100, "bits_per_param": bpp, "total_bits": (n - 100) * bpp + 1600},
        "wall_time_s": 0.0, "peak_memory_bytes": 0, "device": "cpu", "provenance": {"check": "pgbouncer"},
    }


def worker(url: str, name: str, seed: int, threshold: str, deadline: float) -> dict:
    """A worker process: claim, start, and complete groups until the queue is empty."""
    _client_prepares(threshold)
    from kbit.db import connect, queue, session_scope

    rng = random.Random(seed)
    engine = connect(url, upgrade=False, pool_size=1)
    claimed, errors, held = [], [], None
    while time.time() < deadline and len(errors) < 50:
        try:
            with session_scope(engine) as s:
                batch = queue.claim_runs(s, worker=name, limit=rng.randint(*BATCH), lease_seconds=600,
                                         prefer=[held] if held else None)
            if not batch:
                break
            ids = [r.run_id for r in batch]
            claimed += ids
            held = (batch[0].model, batch[0].revision)
            with session_scope(engine) as s:
                queue.heartbeat(s, ids, worker=name, lease_seconds=600)
                for run_id in ids:
                    queue.mark_started(s, run_id, worker=name)
            for r in batch:  # each result the moment it arrives, one transaction each
                with session_scope(engine) as s:
                    queue.complete_run(s, r.run_id, _result(r.config, r.run_id), worker=name)
        except Exception as exc:  # noqa: BLE001 - counted and reported; the check's verdict shows the damage
            errors.append(_first_line(exc))
    engine.dispose()
    return {"claimed": claimed, "errors": errors}


def scheduler(url: str, sweep_id: int, threshold: str, deadline: float, workers_done, out) -> None:
    """The scheduler's rounds, on its own engine, until the sweep has nothing queued or running, or
    the workers have stopped (runs they failed to store stay running)."""
    _client_prepares(threshold)
    from kbit.db import connect, queue, session_scope

    engine = connect(url, upgrade=False)
    rounds, errors = 0, []
    while time.time() < deadline and len(errors) < 50 and not workers_done.is_set():
        try:
            with session_scope(engine) as s:
                queue.requeue_expired(s)
                queue.overdue_runs(s, default_timeout_s=3600)
                running = list(queue.leases_of(s, ""))
                queue.holders(s, running)
                queue.count_queued(s)
                progress = queue.sweep_progress(s, sweep_id)
            rounds += 1
            if progress["queued"] + progress["running"] == 0:
                break
        except Exception as exc:  # noqa: BLE001
            errors.append(_first_line(exc))
        time.sleep(0.05)
    engine.dispose()
    out.put({"rounds": rounds, "errors": errors})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pgbouncer_version(binary: str) -> tuple[str, tuple[int, ...]]:
    line = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    number = line.split()[-1]
    return line, tuple(int(part) for part in number.split(".")[:2])


@contextmanager
def pgbouncer(binary: str, server_url: str, database: str, pool_size: int, prepared: int, ignore: str):
    """PgBouncer in transaction mode on a free port in front of `server_url`'s host; yields the port."""
    server = make_url(server_url)
    folder = Path(tempfile.mkdtemp(prefix="kbit-pgbouncer-"))
    folder.chmod(0o777)  # it drops root for the postgres user, who must write its log here
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{server.username}" ""\n')
    lines = [
        "[databases]",
        f"{database} = host={server.host or '127.0.0.1'} port={server.port or 5432} dbname={database}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1", f"listen_port = {port}", "unix_socket_dir =",
        "auth_type = trust", f"auth_file = {folder / 'userlist.txt'}",
        f"admin_users = {server.username}",
        "pool_mode = transaction",
        "max_client_conn = 200",
        f"default_pool_size = {pool_size}", "reserve_pool_size = 0", f"max_db_connections = {pool_size}",
        f"ignore_startup_parameters = {ignore}",
        f"logfile = {folder / 'pgbouncer.log'}",
    ]
    if prepared:
        lines.append(f"max_prepared_statements = {prepared}")
    if os.geteuid() == 0:
        lines.append("user = postgres")  # PgBouncer refuses to run as root
    ini = folder / "pgbouncer.ini"
    ini.write_text("\n".join(lines) + "\n")
    for path in folder.iterdir():
        path.chmod(0o666)
    proc = subprocess.Popen([binary, "-q", str(ini)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                raise SystemExit(f"pgbouncer exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("pgbouncer did not start listening within 10 s")
        yield port, folder
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


class Monitor(threading.Thread):
    """Peaks of the server's backends on `database` and of PgBouncer's pools while the check runs."""

    def __init__(self, server_url: str, database: str, admin_port: int | None, user: str):
        super().__init__(daemon=True)
        self.server, self.database, self.admin_port, self.user = server_url, database, admin_port, user
        self.peak_backends, self.peak_pool, self.stop = 0, {}, threading.Event()

    def admin(self, command: str) -> list[dict]:
        import psycopg
        from psycopg.rows import dict_row

        # The admin console speaks the simple query protocol only: no parameters, nothing prepared.
        with psycopg.connect(host="127.0.0.1", port=self.admin_port, dbname="pgbouncer", user=self.user,
                             autocommit=True, prepare_threshold=None, row_factory=dict_row) as conn:
            return conn.execute(command).fetchall()

    def run(self) -> None:
        import psycopg

        url = make_url(self.server)
        with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database or "postgres",
                             autocommit=True, prepare_threshold=None) as conn:
            while not self.stop.is_set():
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                 "AND backend_type = 'client backend'", (self.database,)).fetchone()[0]
                self.peak_backends = max(self.peak_backends, n)
                if self.admin_port:
                    for pool in self.admin("SHOW POOLS"):
                        if pool["database"] == self.database:
                            servers = sum(pool.get(k, 0) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
                            for key, value in (("clients", pool["cl_active"] + pool["cl_waiting"]),
                                               ("clients waiting", pool["cl_waiting"]), ("servers", servers),
                                               ("servers active", pool["sv_active"])):
                                self.peak_pool[key] = max(self.peak_pool.get(key, 0), value)
                self.stop.wait(0.1)


def check(mode: str, args) -> dict:
    from kbit.db import connect, session_scope, teams
    from kbit.service import Operations

    with fresh_postgres(args.server, prefix="kbit_pgbouncer_check") as direct_url:
        database = make_url(direct_url).database
        user = make_url(direct_url).username
        connect(direct_url).dispose()  # migrations go direct (docs/operations.md)
        pooler = pgbouncer(args.pgbouncer, args.server, database, args.pool_size, args.max_prepared_statements,
                           args.ignore_startup_parameters) if mode == "pooled" else _nothing()
        with pooler as bouncer:
            port = bouncer[0] if bouncer else None
            url = make_url(direct_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False) \
                if port else direct_url
            _client_prepares(args.prepare_threshold)
            engine = connect(url, upgrade=False)
            with engine.connect() as conn:
                timeout = conn.exec_driver_sql("SHOW statement_timeout").scalar()
            with session_scope(engine) as s:
                token = teams.create_team(s, "check")
            sweep = make_sweep(args.runs, MODELS, "pgb")
            reply = Operations(engine).submit(sweep.spec(), "check", token)
            engine.dispose()
            monitor = Monitor(args.server, database, port, user)
            monitor.start()
            import multiprocessing

            deadline = time.time() + args.timeout
            ctx = multiprocessing.get_context("spawn")
            started = time.perf_counter()
            workers_done, out = ctx.Event(), ctx.Queue()
            sched = ctx.Process(target=scheduler, args=(url, reply["sweep_id"], args.prepare_threshold, deadline,
                                                        workers_done, out))
            sched.start()
            with ctx.Pool(args.workers) as pool:
                per_worker = pool.starmap(worker, [(url, f"w{i}", i, args.prepare_threshold, deadline)
                                                   for i in range(args.workers)])
            workers_done.set()
            rounds = out.get(timeout=60)
            sched.join(10)
            wall = time.perf_counter() - started
            monitor.stop.set()
            monitor.join()
            admin = {}
            if port:
                admin["servers at the end (SHOW SERVERS)"] = len(monitor.admin("SHOW SERVERS"))
                for row in monitor.admin("SHOW STATS"):
                    if row["database"] == database:
                        for key in ("total_xact_count", "total_query_count", "total_wait_time",
                                    "total_server_assignment_count", "total_client_parse_count",
                                    "total_server_parse_count"):
                            if key in row:
                                admin[key] = row[key]
        verdict = verify(direct_url, args.runs, per_worker)
    errors = [e for w in per_worker for e in w["errors"]] + rounds["errors"]
    return {
        "mode": mode, "wall_s": wall, "statement_timeout": timeout, "peak_backends": monitor.peak_backends,
        "pool": monitor.peak_pool, "admin": admin, "errors": errors, "rounds": rounds["rounds"],
        "busy_workers": sum(1 for w in per_worker if w["claimed"]), **verdict,
    }


@contextmanager
def _nothing():
    yield None


def verify(url: str, runs: int, per_worker: list[dict]) -> dict:
    from sqlalchemy import func, select

    from kbit.db import connect, session_scope
    from kbit.db.models import Result, Run

    claimed = [run_id for w in per_worker for run_id in w["claimed"]]
    engine = connect(url, upgrade=False)
    with session_scope(engine) as s:
        states = dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        attempts = s.scalar(select(func.max(Run.attempts)))
        results = s.scalar(select(func.count()).select_from(Result))
        ids = set(s.scalars(select(Run.id)))
    engine.dispose()
    once = (len(claimed) == len(set(claimed)) == runs and set(claimed) == ids and states == {"done": runs}
            and attempts == 1 and results == 2 * runs)
    return {"exactly_once": once, "claims": len(claimed), "distinct": len(set(claimed)), "states": states,
            "max_attempts": attempts, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pgbouncer", default=shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="a Postgres server with trust auth for --server's user")
    parser.add_argument("--runs", type=int, default=2000, help=f"runs in the sweep (a multiple of {MODELS})")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pool-size", type=int, default=4, help="PgBouncer's server connections (default_pool_size)")
    parser.add_argument("--max-prepared-statements", type=int, default=200,
                        help="PgBouncer's max_prepared_statements (>= 1.21; 0 turns its tracking off)")
    parser.add_argument("--prepare-threshold", default="5", help="psycopg's prepare_threshold in every process ('none': never)")
    parser.add_argument("--ignore-startup-parameters", default="extra_float_digits,options")
    parser.add_argument("--modes", nargs="+", choices=["pooled", "direct"], default=["pooled", "direct"])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mode before the workers give up")
    args = parser.parse_args()

    line, _ = pgbouncer_version(args.pgbouncer)
    print(f"{line.strip()} ({args.pgbouncer}); {args.runs} runs, {MODELS} models, {args.workers} worker processes "
          f"+ 1 scheduler; pool_size {args.pool_size}, max_prepared_statements {args.max_prepared_statements}, "
          f"psycopg prepare_threshold {args.prepare_threshold}, ignore_startup_parameters {args.ignore_startup_parameters}")
    for mode in args.modes:
        r = check(mode, args)
        print(f"\n[{mode}] runs done exactly once: {'yes' if r['exactly_once'] else 'NO'} "
              f"({r['claims']} claims, {r['distinct']} distinct, states {r['states']}, max attempts {r['max_attempts']}, "
              f"{r['results']} result rows); {r['busy_workers']} of {args.workers} workers got work; "
              f"{r['rounds']} scheduler rounds")
        print(f"[{mode}] time: {r['wall_s']:.1f} s, {args.runs / r['wall_s']:.0f} runs/s")
        print(f"[{mode}] server connections on the scratch database (pg_stat_activity, peak): {r['peak_backends']}")
        if r["pool"]:
            print(f"[{mode}] PgBouncer SHOW POOLS peaks: " + ", ".join(f"{k} {v}" for k, v in r["pool"].items()))
        if r["admin"]:
            print(f"[{mode}] PgBouncer: " + ", ".join(f"{k} {v}" for k, v in r["admin"].items()))
        print(f"[{mode}] statement_timeout seen by kbit's engine: {r['statement_timeout']}")
        print(f"[{mode}] errors: {len(r['errors'])}" + (f"; first: {r['errors'][0]}" if r["errors"] else ""))


if __name__ == "__main__":
    main()

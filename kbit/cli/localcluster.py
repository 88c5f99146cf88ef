"""`kbit up` / `kbit down`: the real distributed service on one machine, for trying it out.

`up` starts a Ray head on loopback (`ray start --head --block`, never port 6379), creates the
detached scheduler on it, starts the dashboard, and records the pids and addresses in
$KBIT_HOME/service.json; later `kbit` commands then talk to it through the Ray client. `down`
stops exactly the processes `up` started (their process groups), nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kbit import settings
from kbit.db import connect, mask_url, resolve_url
from kbit.errors import ServiceError

STATE_FILE = "service.json"
# The head's Ray client proxy forks a server process per client from a process full of gRPC
# threads. With gRPC's fork handlers on (its default), that child often died at once (6 of 10 fresh
# heads here, each failure costing the client 30-44 s before it tried again; ray-project/ray#63202).
# The child execs at once, the case gRPC's fork_support.md says to turn the handlers off for; with
# them off, 0 of 10 (benchmarks/head_start.md).
HEAD_ENV = {"GRPC_ENABLE_FORK_SUPPORT": "false"}


def state_path() -> Path:
    return settings.kbit_home() / STATE_FILE


def pid_alive(pid: int | None) -> bool:
    import psutil

    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def recorded_state() -> dict | None:
    """What $KBIT_HOME/service.json says `kbit up` started ({} when unreadable), or None without one."""
    path = state_path()
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_state() -> dict | None:
    """The running local service's record, or None when there is none (or it died)."""
    state = recorded_state()
    return state if state and pid_alive(state.get("head_pid")) else None


def running_address() -> str | None:
    state = read_state()
    return state["address"] if state else None


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout_s: float, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def wait_for_head_started(log_path: Path, offset: int, timeout_s: float, alive=lambda: True) -> bool:
    """`ray start --block` logs that it blocks once every head process is up; the client port
    opens earlier, and a client that connects in between waits out long gRPC timeouts."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            with open(log_path, "rb") as log:
                log.seek(offset)
                if b"block forever" in log.read():
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def ray_executable() -> str:
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def start_head(host: str, gcs_port: int, client_port: int, num_cpus: int | None, env: dict, log_path: Path,
               num_gpus: int | None = None, extra_resources: dict | None = None) -> subprocess.Popen:
    """`ray start --head --block` in a process group of its own (stopping that group stops the
    head), with HEAD_ENV added to `env`."""
    cmd = [
        ray_executable(), "start", "--head", "--block", f"--port={gcs_port}", f"--ray-client-server-port={client_port}",
        f"--node-ip-address={host}", "--include-dashboard=false", "--disable-usage-stats",
    ]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        cmd.append(f"--num-gpus={num_gpus}")
    if extra_resources:
        cmd.append(f"--resources={json.dumps(extra_resources)}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**env, **HEAD_ENV},
                                start_new_session=True)


def session_processes(sid: int) -> list:
    """Live processes of the session `sid` (a head started with start_new_session leads its own)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def stop_group(pid: int | None, timeout_s: float = 5.0) -> bool:
    """Stop every process of the session `pid` leads (SIGTERM, then SIGKILL what is left after
    `timeout_s`); True if any was running. Ray's workers sit in process groups of their own but
    stay in the session, so the session, not the group, is what `up` owns."""
    import psutil

    if not pid:
        return False
    procs = session_processes(pid)
    if not procs:
        return False
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    try:  # reap the leader when it is our own child (kbit up and kbit down in one process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True


def up(host: str = "127.0.0.1", gcs_port: int = 6380, client_port: int = 10001, dashboard_port: int = 8501,
       num_cpus: int | None = None, dashboard: bool = True, say=print) -> dict:
    if read_state():
        raise ServiceError(f"a local kbit service is already running ({running_address()}); run `kbit down` first")
    if 6379 in (gcs_port, client_port, dashboard_port):
        raise ServiceError("port 6379 belongs to Redis here; pick another with --port / --client-port")
    for port, flag in ((gcs_port, "--port"), (client_port, "--client-port"), (dashboard_port, "--dashboard-port")):
        if (flag != "--dashboard-port" or dashboard) and not port_free(host, port):
            raise ServiceError(f"port {port} on {host} is already in use; choose another with {flag}")
    db_url = resolve_url(None)
    connect(db_url).dispose()  # fail now, in one line, if the database cannot be opened
    home = settings.kbit_home()
    env = dict(os.environ, KBIT_HOME=str(home), KBIT_DATABASE_URL=db_url, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_USAGE_STATS_ENABLED="0")
    logs = home / "logs"
    say(f"starting a Ray head on {host}:{gcs_port} (client port {client_port}) ...")
    log_path = logs / "ray-head.log"
    log_start = log_path.stat().st_size if log_path.exists() else 0
    head = start_head(host, gcs_port, client_port, num_cpus, env, log_path)
    address = f"ray://{host}:{client_port}"
    if not (wait_for_port(host, client_port, 90, alive=lambda: head.poll() is None)
            and wait_for_head_started(log_path, log_start, 90, alive=lambda: head.poll() is None)):
        stop_group(head.pid)
        raise ServiceError(f"the Ray head did not come up; see {logs / 'ray-head.log'}")
    state = {"address": address, "gcs_address": f"{host}:{gcs_port}", "head_pid": head.pid,
             "database": mask_url(db_url), "dashboard_pid": None, "dashboard_url": None}
    state_path().parent.mkdir(parents=True, exist_ok=True)
    state_path().write_text(json.dumps(state, indent=2))
    try:
        start_scheduler(address, db_url)
    except Exception:
        stop_group(head.pid)
        state_path().unlink(missing_ok=True)
        raise
    if dashboard:
        with open(logs / "dashboard.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kbit.dashboard", "--host", host, "--port", str(dashboard_port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        if wait_for_port(host, dashboard_port, 60, alive=lambda: proc.poll() is None):
            state["dashboard_pid"] = proc.pid
            state["dashboard_url"] = f"http://{host}:{dashboard_port}"
            state_path().write_text(json.dumps(state, indent=2))
        else:
            stop_group(proc.pid)
            say(f"the dashboard did not start (see {logs / 'dashboard.log'}); the cluster runs without it")
    return state


def start_scheduler(address: str, db_url: str | None) -> dict:
    """Connect to the cluster and make sure the detached scheduler runs; the client connection is
    kept for this process's next call (`kbit.cluster.connect.release`), closed when it failed."""
    from kbit.cluster.actor import get_or_create_scheduler
    from kbit.cluster.connect import connect_ray, disconnect, release

    connect_ray(address)
    try:
        _, info = get_or_create_scheduler(db_url=db_url)
    except BaseException:
        disconnect()
        raise
    release()
    return info


def down(say=print) -> bool:
    state = recorded_state()
    if state is None:
        return False
    from kbit.cluster.connect import disconnect, kept_address

    if kept_address() == state["address"]:
        disconnect()  # this process's kept client connection to the head about to stop
    stopped = False
    if stop_group(state.get("dashboard_pid")):
        say("stopped the dashboard")
        stopped = True
    if stop_group(state.get("head_pid")):
        say("stopped the Ray head and the scheduler")
        stopped = True
    state_path().unlink(missing_ok=True)
    return stopped

"""`python -m kbit.dashboard`: the streamlit command it runs and its option checks."""

import subprocess
import sys

import pytest

from kbit.dashboard import __main__ as entry


def test_streamlit_command_is_headless_on_the_given_address():
    cmd = entry.streamlit_command("0.0.0.0", 9123)
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4].endswith("kbit/dashboard/app.py")
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts["--server.address"] == "0.0.0.0" and opts["--server.port"] == "9123"
    assert opts["--server.headless"] == "true"


def test_bad_port_is_one_clear_message():
    out = subprocess.run([sys.executable, "-m", "kbit.dashboard", "--port", "70000"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "--port 70000 is not a TCP port; pick one in 1..65535" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_kbit_dashboard_stopped_by_its_pid_leaves_nothing_on_its_port(seeded_db, tmp_path):
    """`kbit dashboard` becomes Streamlit (exec), so SIGTERM to the pid a user sees stops the server."""
    import os
    import signal
    import socket
    import time

    import psutil

    from tests.support.net import free_port

    port = free_port()
    kbit = os.path.join(os.path.dirname(sys.executable), "kbit")
    proc = subprocess.Popen([kbit, "dashboard", "--port", str(port), "--database-url", seeded_db[0]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, HOME=str(tmp_path)))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the dashboard did not listen on {port}: {proc.stderr.read()[-2000:]!r}")
        assert "streamlit" in " ".join(psutil.Process(proc.pid).cmdline())  # the same pid is Streamlit now
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        listening = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                     and c.status == psutil.CONN_LISTEN]
        assert listening == []
    finally:
        if proc.poll() is None:
            proc.kill()

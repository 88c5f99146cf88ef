"""`python -m kbit.dashboard`: the streamlit command it runs and its option checks."""

import subprocess
import sys

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

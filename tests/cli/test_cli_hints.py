"""The commands kbit suggests are ones that work from here (a newcomer after `make demo` has
.venv/bin/kbit, not `kbit` on PATH)."""

from __future__ import annotations

import os
import sys

from kbit.cli.output import kbit_command


def test_a_kbit_not_on_path_is_named_by_the_path_it_was_started_by(tmp_path, monkeypatch):
    exe = tmp_path / ".venv" / "bin" / "kbit"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [".venv/bin/kbit", "demo"])
    assert kbit_command() == os.path.join(".venv", "bin", "kbit")
    monkeypatch.setenv("PATH", f"{exe.parent}:/usr/bin:/bin")
    assert kbit_command() == "kbit"  # on PATH (an activated environment): the plain name works


def test_started_as_a_module_it_says_so(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/kbit/cli/main.py", "demo"])
    assert kbit_command() == f"{sys.executable} -m kbit.cli.main"

"""kbit.settings: every KBIT_* variable read in one place, with its default and a clear error."""

import pytest

from kbit import settings
from kbit.errors import UsageError


def test_defaults_follow_kbit_home(monkeypatch, tmp_path):
    for name in ("KBIT_DATABASE_URL", "KBIT_LEASE_SECONDS", "KBIT_MAX_RUNS_PER_GROUP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KBIT_HOME", str(tmp_path))
    assert settings.kbit_home() == tmp_path
    assert settings.database_url() == f"sqlite:///{tmp_path / 'kbit.db'}"
    assert settings.database_url_given() is None
    assert settings.lease_seconds() == 120.0 and settings.max_runs_per_group() == 16


def test_values_are_read_at_each_call(monkeypatch):
    monkeypatch.setenv("KBIT_MAX_RUNS_PER_GROUP", "4")
    assert settings.max_runs_per_group() == 4
    monkeypatch.setenv("KBIT_MAX_RUNS_PER_GROUP", "  ")  # blank means unset
    assert settings.max_runs_per_group() == 16


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_a_bad_number_names_the_variable_and_the_fix(monkeypatch, value):
    monkeypatch.setenv("KBIT_LEASE_SECONDS", value)
    with pytest.raises(UsageError, match="KBIT_LEASE_SECONDS=.*unset it or give e.g. KBIT_LEASE_SECONDS=120"):
        settings.lease_seconds()


def test_group_seconds_may_be_zero_but_not_negative(monkeypatch):
    assert settings.group_seconds() == 30.0
    for off in ("0", "0.00"):
        monkeypatch.setenv("KBIT_GROUP_SECONDS", off)
        assert settings.group_seconds() == 0.0
    monkeypatch.setenv("KBIT_GROUP_SECONDS", "-1")
    with pytest.raises(UsageError, match="KBIT_GROUP_SECONDS='-1' must be 0 or more; unset it or give e.g."):
        settings.group_seconds()


def test_forwarded_env_holds_only_what_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("KBIT_HOME", str(tmp_path))
    monkeypatch.delenv("KBIT_POLL_SECONDS", raising=False)
    env = settings.forwarded_env()
    assert env["KBIT_HOME"] == str(tmp_path) and "KBIT_POLL_SECONDS" not in env
    assert set(env) <= set(settings.FORWARDED_ENV)


def test_the_variables_table_is_written_once():
    """docs/operations.md shows settings.VARIABLES as `python -m kbit.settings` prints it, and every
    KBIT_* name the settings module reads is in it."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert settings.variables_table() in doc
    listed = {n.strip() for name, _, _ in settings.VARIABLES for n in name.split(",")}
    source = Path(settings.__file__).read_text()
    read = set(re.findall(r'_(?:text|number)\("(KBIT_\w+)"', source)) | set(re.findall(r'environ\.get\("(KBIT_\w+)"', source))
    assert read and read <= listed, sorted(read - listed)

"""Fixtures every test folder shares: one offline environment per session (and the micro family
in it), fresh databases on a real PostgreSQL server, and a SQLite database with a team (`db`).

TRITON_INTERPRET=1 is set here, before any test module is imported: triton decides at import
whether its own language functions (tl.max, ...) are interpreted, and torch, transformers and
lm-eval import triton on the way, so a test module of another part collected before tests/kernels
would otherwise fix it compiled for the whole session. KBIT_TEST_GPU=1 leaves it unset (compiled kernels).

Postgres comes from $KBIT_TEST_POSTGRES_URL, else from scripts/ensure_postgres.sh (which starts a
throwaway server when none answers). It never skips: no Postgres is a loud failure.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

if os.environ.get("KBIT_TEST_GPU") != "1":
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402 - after TRITON_INTERPRET

from tests.support.postgres import fresh_postgres, postgres_server  # noqa: E402
from tests.support.suite import CLUSTER_FOLDER, is_cluster_test, misplaced_cluster_tests  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    try:
        return postgres_server()
    except subprocess.CalledProcessError as exc:
        pytest.fail("these tests need PostgreSQL: set KBIT_TEST_POSTGRES_URL or make scripts/ensure_postgres.sh work "
                    f"(it said: {(exc.stderr or exc.stdout or '').strip()})", pytrace=False)


@pytest.fixture(scope="session")
def fresh_postgres_database(postgres_server_url):
    """A context manager: a new database (kbit_test_<random>) on the server, dropped afterwards."""
    return functools.partial(fresh_postgres, postgres_server_url, prefix="kbit_test")


@pytest.fixture(scope="session")
def offline_env(tmp_path_factory):
    """A temporary KBIT_HOME (with the micro family's build cache) and HF_HOME, the Hugging Face hub
    and datasets offline, Ray kept on loopback; set for the whole session, restored after it."""
    env = {
        "KBIT_HOME": str(tmp_path_factory.mktemp("kbit-home")), "HF_HOME": str(tmp_path_factory.mktemp("hf-home")),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def offline_home(offline_env):
    """The session's temporary KBIT_HOME (see offline_env)."""
    return offline_env["KBIT_HOME"]


@pytest.fixture(scope="session")
def micro(offline_home):
    """The micro family, ready once for the session: {model id: folder}."""
    from kbit.family.members import ensure_family, family_members

    return dict(zip(family_members("micro"), ensure_family("micro", offline_home)))


@pytest.fixture
def db(tmp_path):
    """(engine, url, team, token) on a fresh SQLite file."""
    from kbit.db import connect, session_scope, teams

    url = f"sqlite:///{tmp_path / 'kbit.db'}"
    engine = connect(url)
    with session_scope(engine) as s:
        token = teams.create_team(s, "nlp")
    yield engine, url, "nlp", token
    engine.dispose()


@pytest.fixture(autouse=True)
def _ray_tests_are_marked(request):
    """`make test-fast` selects by marker: a test that starts Ray must say so (@pytest.mark.ray)."""
    def ray_up() -> bool:
        ray = sys.modules.get("ray")
        return ray is not None and ray.is_initialized()

    before = ray_up()
    yield
    if not before and ray_up() and request.node.get_closest_marker("ray") is None:
        pytest.fail("this test started Ray in this process: mark it @pytest.mark.ray (make test-fast leaves those out)",
                    pytrace=False)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """`make test` runs the tests that start Ray or cut Postgres from tests/cluster/ only, one after
    another in a process of their own (two clusters on two cores would starve each other's
    deadlines): one marked so elsewhere is refused here. Asked for beside others (scripts/test.sh
    with arguments: two pytest-xdist processes, --dist loadgroup), they still share one process, and
    the browser tests one process and its server."""
    misplaced = misplaced_cluster_tests(items)
    if misplaced:
        raise pytest.UsageError(f"tests marked ray or outage must live in {CLUSTER_FOLDER} (make test runs them from "
                                f"there only): move {', '.join(misplaced)}")
    for item in items:
        if is_cluster_test(item):
            item.add_marker(pytest.mark.xdist_group("cluster"))
        elif item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))

"""docker-compose.yml and the Dockerfile, checked without a Docker engine: services, ports, volumes,
health checks, GPU reservations, environment, and that every command names a real entry point."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from clustertest_helpers import REPO

from kbit.cli.main import build_parser

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]
VARS = re.compile(r"\$\{(\w+):([-?])([^}]*)\}")
REQUIRED = "<required>"
POOLED = ("head", "worker", "gateway")  # the queue's clients: through PgBouncer
DIRECT = ("dashboard",)  # long read transactions: straight to Postgres


def expand(text: str) -> str:
    """Compose's ${VAR:-default} with the defaults (what runs when no .env overrides them), and
    ${VAR:?message} (compose refuses to start without VAR) as <required>."""
    return VARS.sub(lambda m: m.group(3) if m.group(2) == "-" else REQUIRED, text)


def command_text(service: str) -> str:
    cmd = SERVICES[service]["command"]
    return expand(" ".join(cmd) if isinstance(cmd, list) else cmd)


def kbit_invocations(text: str) -> list[list[str]]:
    out = []
    for part in re.split(r"[;&|]+|\buntil\b|\bdo\b|\bdone\b", text):
        words = shlex.split(part)
        if words and words[0] == "kbit":
            out.append(words[1:])
    return out


def ports(service: str) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in SERVICES[service].get("ports", [])}


def test_nothing_is_published_on_all_interfaces_and_nothing_runs_with_a_default_secret():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            host = expand(str(port)).rsplit(":", 2)
            assert len(host) == 3 and host[0] == "127.0.0.1", f"{name} publishes {port} beyond loopback by default"
    assert not SERVICES["postgres"].get("ports"), "Postgres must not be published"
    assert not SERVICES["pgbouncer"].get("ports"), "PgBouncer must not be published"
    assert "8265" not in " ".join(str(p) for p in SERVICES["head"].get("ports", []))  # the Ray dashboard runs jobs
    assert "--dashboard-host=127.0.0.1" in command_text("head") and "0.0.0.0" not in command_text("head")
    assert expand(SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]) == REQUIRED
    for name in ("head", "worker", "dashboard", "gateway"):
        env = SERVICES[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and expand(env["RAY_AUTH_TOKEN"]) == REQUIRED, name
        assert f":{REQUIRED}@" in expand(env["KBIT_DATABASE_URL"])
    assert expand(SERVICES["pgbouncer"]["environment"]["DB_PASSWORD"]) == REQUIRED
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert expand(str(value)) == REQUIRED, f"{name}'s {key} has a default"


def test_the_expansion_rules_themselves():
    assert expand("${A:-127.0.0.1}:80:80") == "127.0.0.1:80:80"
    assert expand("${P:?set P}") == REQUIRED


def test_the_services_and_one_image_from_the_dockerfile():
    assert set(SERVICES) == {"postgres", "pgbouncer", "head", "worker", "dashboard", "gateway"}
    assert SERVICES["head"]["build"] == "."
    for name in ("head", "worker", "dashboard", "gateway"):
        assert SERVICES[name]["image"] == SERVICES["head"]["image"]


def database_url(service: str) -> str:
    return expand(SERVICES[service]["environment"]["KBIT_DATABASE_URL"])


def postgres_settings() -> dict[str, str]:
    """The server settings postgres' command passes as `-c name=value`."""
    cmd = SERVICES["postgres"]["command"]
    return dict(cmd[i + 1].split("=", 1) for i, word in enumerate(cmd) if word == "-c")


def bouncer_env() -> dict[str, str]:
    return {key: expand(str(value)) for key, value in SERVICES["pgbouncer"]["environment"].items()}


def test_postgres_has_a_volume_and_a_healthcheck_and_matches_the_urls():
    pg = SERVICES["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert pg["volumes"][0].split(":")[0] in COMPOSE["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert pg["command"][0] == "postgres"  # the image's entrypoint starts the server only then
    env = pg["environment"]
    credentials = f"postgresql+psycopg://{env['POSTGRES_USER']}:{expand(env['POSTGRES_PASSWORD'])}@"
    for name in DIRECT:
        assert database_url(name) == f"{credentials}postgres:5432/{env['POSTGRES_DB']}"
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    bouncer = bouncer_env()
    for name in POOLED:
        assert database_url(name) == f"{credentials}pgbouncer:{bouncer['LISTEN_PORT']}/{env['POSTGRES_DB']}", name
        if name != "worker":  # workers wait for the head, which waits for the pooler
            assert SERVICES[name]["depends_on"]["pgbouncer"]["condition"] == "service_healthy", name
    assert SERVICES["worker"]["depends_on"]["head"]["condition"] == "service_healthy"


def test_pgbouncer_pools_transactions_in_front_of_postgres_with_its_credentials():
    pgb, pg = SERVICES["pgbouncer"], SERVICES["postgres"]
    env, pg_env = bouncer_env(), pg["environment"]
    assert env["POOL_MODE"] == "transaction"
    assert (env["DB_HOST"], env["DB_PORT"]) == ("postgres", "5432")
    assert (env["DB_USER"], env["DB_NAME"]) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
    assert env["DB_PASSWORD"] == expand(pg_env["POSTGRES_PASSWORD"]) == REQUIRED
    assert env["AUTH_TYPE"] == "scram-sha-256"  # postgres:16 keeps SCRAM verifiers; md5 entries could not log in
    assert pgb["depends_on"]["postgres"]["condition"] == "service_healthy"
    test = pgb["healthcheck"]["test"]
    assert "pg_isready" in test and test[test.index("-p") + 1] == env["LISTEN_PORT"]
    image, tag = pgb["image"].rsplit(":", 1)
    assert image == "edoburu/pgbouncer" and tag != "latest"


def test_pgbouncer_keeps_prepared_statements_and_drops_session_options_that_postgres_applies_instead():
    env = bouncer_env()
    version = tuple(int(x) for x in re.match(r"v?(\d+)\.(\d+)", SERVICES["pgbouncer"]["image"].rsplit(":", 1)[1]).groups())
    # psycopg prepares after 5 executions and closes with protocol Close: needs tracking (>= 1.21)
    # and DEALLOCATE ALL (>= 1.22, psycopg sends it after a rollback).
    assert version >= (1, 22) and int(env["MAX_PREPARED_STATEMENTS"]) > 0
    assert "options" in env["IGNORE_STARTUP_PARAMETERS"].split(",")
    from kbit.db.engine import PG_CONNECT_ARGS

    asked = dict(option.split("=", 1) for option in PG_CONNECT_ARGS["options"].split("-c ") if option.strip())
    settings = postgres_settings()
    for name in asked:  # what kbit asks in `options` but cannot get through the pooler, the server sets
        assert name in settings, f"kbit sets {name} in its startup options; postgres' command must set it"


def test_pool_sizes_fit_under_max_connections():
    env = bouncer_env()
    max_connections = int(postgres_settings()["max_connections"])
    pool, reserve, cap = int(env["DEFAULT_POOL_SIZE"]), int(env["RESERVE_POOL_SIZE"]), int(env["MAX_DB_CONNECTIONS"])
    assert pool + reserve <= cap
    from kbit.db.engine import make_engine

    # The direct clients' own pools (SQLAlchemy's default: pool_size + max_overflow) beside the
    # pooler's cap, with superuser_reserved_connections (3) and an operator's psql to spare.
    pool_of_one = make_engine("postgresql+psycopg://u@h/d").pool
    direct = len(DIRECT) * (pool_of_one.size() + pool_of_one._max_overflow)
    assert cap + direct + 3 + 5 <= max_connections, (cap, direct, max_connections)
    assert cap <= max_connections // 2  # "well under": the server is not sized by the pooler
    assert int(env["MAX_CLIENT_CONN"]) >= 256  # many more workers than server connections
    nofile = SERVICES["pgbouncer"]["ulimits"]["nofile"]
    assert min(nofile["soft"], nofile["hard"]) > int(env["MAX_CLIENT_CONN"]) + cap


def test_head_runs_ray_with_the_client_port_and_the_scheduler():
    text = command_text("head")
    assert "ray start --head" in text and "--block" in text
    assert "--ray-client-server-port=10001" in text and "--port=6380" in text and "--dashboard-port=8265" in text
    assert "6379" not in text
    assert ports("head") == {6380, 10001}
    assert SERVICES["head"]["environment"]["GRPC_ENABLE_FORK_SUPPORT"] == "false"  # its client proxy forks (localcluster.HEAD_ENV)
    invocations = kbit_invocations(text)
    assert ["serve", "--address", "auto"] in invocations
    parser = build_parser()
    for argv in invocations:
        parser.parse_args(argv)  # a real subcommand with real options, or SystemExit fails the test


def test_workers_reserve_gpus_and_join_the_head():
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    text = command_text("worker")
    assert "ray start --address=head:6380" in text and "--num-gpus=1" in text
    assert expand(str(devices[0]["count"])) == "1"  # the GPUs reserved == the GPUs offered to Ray
    assert worker["depends_on"]["head"]["condition"] == "service_healthy"
    assert "container_name" not in worker and not worker.get("ports")  # so --scale works


def test_the_gateway_runs_a_real_kbit_command_on_its_published_port():
    cmd = SERVICES["gateway"]["command"]
    assert cmd[:2] == ["kbit", "gateway"]
    args = build_parser().parse_args(cmd[1:])
    assert args.port in ports("gateway")
    assert SERVICES["gateway"]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"


def test_dashboard_runs_the_dashboard_module():
    cmd = SERVICES["dashboard"]["command"]
    assert cmd[:3] == ["python", "-m", "kbit.dashboard"]
    assert "--port" in cmd and int(cmd[cmd.index("--port") + 1]) in ports("dashboard")
    assert (REPO / "kbit" / "dashboard" / "__main__.py").exists(), "python -m kbit.dashboard needs __main__.py"


@pytest.mark.parametrize("name", ["head", "worker", "dashboard"])
def test_every_kbit_service_shares_the_data_volume_and_settings(name):
    env = SERVICES[name]["environment"]
    assert env["KBIT_HOME"].startswith("/data") and env["HF_HOME"].startswith("/data")
    if name != "dashboard":
        assert any(str(v).endswith(":/data") for v in SERVICES[name]["volumes"])


def test_dockerfile_installs_the_package_with_its_entry_point_and_exposes_the_ports():
    assert re.search(r"^FROM python:3\.1[0-9]", DOCKERFILE, re.M)
    assert "COPY kbit ./kbit" in DOCKERFILE and "pip install" in DOCKERFILE
    assert "kbit --help" in DOCKERFILE  # the build fails if the console script is missing
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", DOCKERFILE, re.M) for p in line.split()}
    assert {6380, 10001, 8265, 8501} <= exposed
    for path in re.findall(r"^COPY (\S+) ", DOCKERFILE, re.M):
        assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repository"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    assert Path(REPO / "pyproject.toml").read_text().count('kbit = "kbit.cli.main:main"') == 1

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
    assert "8265" not in " ".join(str(p) for p in SERVICES["head"].get("ports", []))  # the Ray dashboard runs jobs
    assert "--dashboard-host=127.0.0.1" in command_text("head") and "0.0.0.0" not in command_text("head")
    assert expand(SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]) == REQUIRED
    for name in ("head", "worker", "dashboard", "gateway"):
        env = SERVICES[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and expand(env["RAY_AUTH_TOKEN"]) == REQUIRED, name
        assert f":{REQUIRED}@" in expand(env["KBIT_DATABASE_URL"])


def test_the_expansion_rules_themselves():
    assert expand("${A:-127.0.0.1}:80:80") == "127.0.0.1:80:80"
    assert expand("${P:?set P}") == REQUIRED


def test_the_four_services_and_one_image_from_the_dockerfile():
    assert set(SERVICES) == {"postgres", "head", "worker", "dashboard", "gateway"}
    assert SERVICES["head"]["build"] == "."
    for name in ("head", "worker", "dashboard", "gateway"):
        assert SERVICES[name]["image"] == SERVICES["head"]["image"]


def test_postgres_has_a_volume_and_a_healthcheck_and_matches_the_url():
    pg = SERVICES["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert pg["volumes"][0].split(":")[0] in COMPOSE["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    env = pg["environment"]
    for name in ("head", "worker", "dashboard"):
        url = expand(SERVICES[name]["environment"]["KBIT_DATABASE_URL"])
        assert url == f"postgresql+psycopg://{env['POSTGRES_USER']}:{expand(env['POSTGRES_PASSWORD'])}@postgres:5432/" \
                      f"{env['POSTGRES_DB']}"
        if name != "worker":
            assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_head_runs_ray_with_the_client_port_and_the_scheduler():
    text = command_text("head")
    assert "ray start --head" in text and "--block" in text
    assert "--ray-client-server-port=10001" in text and "--port=6380" in text and "--dashboard-port=8265" in text
    assert "6379" not in text
    assert ports("head") == {6380, 10001}
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
    assert SERVICES["gateway"]["depends_on"]["postgres"]["condition"] == "service_healthy"


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

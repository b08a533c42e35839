"""docker-compose.yml, checked structurally (no Docker engine or compose plugin is needed).

What a `docker compose config` run would catch that matters here: services, dependency conditions,
healthchecks, exec-form commands that keep shutdown warm, and required secrets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_files import PROMETHEUS_CONFIG, RULES, SCRAPE_JOB
from ops_env import REPO

REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")
MONITORING = {"prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = (REPO / "docker-compose.yml").read_text()
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def services(compose: dict[str, Any]) -> dict[str, Any]:
    svc: dict[str, Any] = compose["services"]
    return svc


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {
        "redis",
        "postgres",
        "migrate",
        "worker-incremental",
        "worker-full",
        "beat",
        "flower",
        *MONITORING,
    }
    assert "pgdata" in compose["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in services(compose)["postgres"]["volumes"]


def test_redis_never_evicts(compose: dict[str, Any]) -> None:
    command = services(compose)["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_dependency_conditions(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert svc["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert svc["migrate"]["restart"] == "no"
    assert svc["migrate"]["command"] == ["syncworker", "db", "upgrade"]
    for name in ("worker-incremental", "worker-full", "beat"):
        deps = svc[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
    for name, service in svc.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in svc, f"{name} depends on unknown {dep}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in svc[dep], f"{name} waits for {dep}, which has no healthcheck"


def test_long_running_services_have_healthchecks_and_exec_form(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name in ("redis", "postgres", "worker-incremental", "worker-full", "beat", "flower"):
        assert svc[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in ("worker-incremental", "worker-full", "beat", "flower"):
        # A list is exec form: Celery itself is the process that receives SIGTERM.
        assert isinstance(svc[name]["command"], list), name
        assert svc[name]["command"][:3] == ["celery", "-A", "worker"], name
        assert svc[name]["init"] is True, name
    assert svc["worker-incremental"]["healthcheck"]["test"][:3] == ["CMD", "syncworker", "health"]


def test_full_and_incremental_runs_have_workers_of_their_own(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name, queue, var in (
        ("worker-incremental", "sync-incremental", "INCREMENTAL_WORKER_CONCURRENCY"),
        ("worker-full", "sync-full", "FULL_WORKER_CONCURRENCY"),
    ):
        command = svc[name]["command"]
        assert command[command.index("-Q") + 1] == queue
        assert any(arg.startswith("--concurrency=${" + var) for arg in command), command
        assert svc[name]["stop_grace_period"]


def test_flower_never_runs_without_basic_auth(compose: dict[str, Any]) -> None:
    flower = services(compose)["flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert REQUIRED.fullmatch(auth), auth
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def test_settings_come_from_the_env_file_and_secrets_are_required(compose: dict[str, Any]) -> None:
    for name in ("migrate", "worker-incremental", "worker-full", "beat", "flower"):
        env_file = services(compose)[name]["env_file"]
        assert env_file == [{"path": ".env", "required": False}], name
    password = services(compose)["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert REQUIRED.fullmatch(password)
    assert "${POSTGRES_PASSWORD:?" in services(compose)["worker-incremental"]["environment"]["DATABASE_URL"]


def local_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository path bind-mounted there."""
    mounts = [volume.split(":") for volume in service.get("volumes", []) if volume.startswith("./")]
    return {target: REPO / source for source, target, *_ in mounts}


def test_monitoring_is_optional_and_reads_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        assert (service.get("profiles") == ["monitoring"]) == (name in MONITORING), name
    for name in MONITORING:
        service = services(compose)[name]
        # Compose interpolates every service, profile or not: a required variable here would stop
        # the default stack from starting.
        assert not REQUIRED.search(yaml.safe_dump(service)), name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert local_mounts(service), name
        for path in local_mounts(service).values():
            assert path.exists(), path


def test_prometheus_scrapes_every_worker_that_exports_metrics(compose: dict[str, Any]) -> None:
    svc = services(compose)
    exporters = {
        f"{name}:{service['environment']['METRICS_PORT']}"
        for name, service in svc.items()
        if "METRICS_PORT" in (service.get("environment") or {})
    }
    assert exporters == {"worker-incremental:9100", "worker-full:9100"}
    for name in ("worker-incremental", "worker-full"):
        assert svc[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] in svc[name]["tmpfs"], name
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == SCRAPE_JOB]
    assert {target for static in job["static_configs"] for target in static["targets"]} == exporters
    prometheus = svc["prometheus"]
    assert local_mounts(prometheus)["/etc/prometheus"] == PROMETHEUS_CONFIG.parent
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert config["rule_files"] == [RULES.name]
    # The "no live worker" alerts watch the job that scrapes them.
    assert set(re.findall(r'job="([^"]+)"', RULES.read_text())) == {SCRAPE_JOB}


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    mounts = local_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    assert "127.0.0.1:9090:9090" in services(compose)["prometheus"]["ports"]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "syncworker.yml").read_text())["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert (dashboards / "syncworker.json").is_file()
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}

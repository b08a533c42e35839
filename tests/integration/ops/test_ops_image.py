"""The image, checked from its Dockerfile and docker-compose.yml (no Docker engine needed), and its default
command run the way a container would run it.

What matters: the runtime user can write the event spool, compose keeps the spool on a volume for every
service built from the image, and the default command never plays the demo.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from image_spec import cmd, created_dirs, env, instructions, runtime_uid, runtime_user
from ops_env import BIN, REPO, clean_env
from store_contents import tables_in

from worker.infra.settings import load_settings

UPSTREAM_VARIABLES = [
    "ODOO_URL",
    "ODOO_DB",
    "ODOO_USERNAME",
    "ODOO_API_KEY",
    "WOOCOMMERCE_URL",
    "WOOCOMMERCE_CONSUMER_KEY",
    "WOOCOMMERCE_CONSUMER_SECRET",
]


def spool_path() -> PurePosixPath:
    return PurePosixPath(env()["EVENT_SPOOL_PATH"])


def test_the_runtime_user_owns_the_spool_directory() -> None:
    made = {d.path: d for d in created_dirs()}
    assert spool_path().parent in made, made
    spool_dir = made[spool_path().parent]
    assert spool_dir.owner == runtime_user()
    assert spool_dir.mode & 0o700 == 0o700
    assert runtime_uid() != 0


def test_the_spool_is_absolute_and_outside_the_root_owned_workdir() -> None:
    workdir = PurePosixPath([rest for keyword, rest in instructions() if keyword == "WORKDIR"][-1])
    assert spool_path().is_absolute()
    assert not spool_path().is_relative_to(workdir)


def test_the_user_switch_comes_after_the_directory_and_before_the_command() -> None:
    keywords = [keyword for keyword, _ in instructions()]
    made = next(i for i, (k, rest) in enumerate(instructions()) if k == "RUN" and "install -d" in rest)
    user = keywords.index("USER")
    assert made < user < keywords.index("CMD")
    assert "RUN" not in keywords[user:]  # nothing later runs as root and changes the owner back


def test_the_default_command_is_run_in_exec_form_and_never_the_demo() -> None:
    assert cmd() == ["syncworker", "run"]
    assert load_settings(_env_file=None, demo_fallback=env()["DEMO_FALLBACK"]).demo_fallback is False


@pytest.mark.parametrize("with_database", [True, False], ids=["database-url-set", "nothing-set"])
def test_the_default_command_without_upstream_refuses(
    with_database: bool, scratch_pg_url: str, tmp_path: Path
) -> None:
    argv = [str(BIN / cmd()[0]), *cmd()[1:]]
    values = env() | {"EVENT_SPOOL_PATH": str(tmp_path / "spool" / "events.spool")}
    if with_database:
        values["DATABASE_URL"] = scratch_pg_url
    done = subprocess.run(
        argv, env=clean_env(**values), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    for name in UPSTREAM_VARIABLES:
        assert name in done.stderr
    assert "syncworker demo" in done.stderr
    assert "DEMO" not in done.stdout
    assert list(tmp_path.iterdir()) == []
    assert tables_in(scratch_pg_url) == []


@pytest.fixture(scope="module")
def app_services() -> dict[str, Any]:
    """The compose services built from this image."""
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    built = {name: svc for name, svc in doc["services"].items() if "build" in svc}
    assert {"migrate", "worker-incremental", "worker-full", "beat", "flower"} <= set(built)
    return {"volumes": doc["volumes"], "services": built}


def test_compose_keeps_the_spool_on_a_named_volume(app_services: dict[str, Any]) -> None:
    for name, service in app_services["services"].items():
        mounts = dict(reversed(v.split(":")[:2]) for v in service.get("volumes", []))
        volume = mounts.get(str(spool_path().parent))
        assert volume is not None, f"{name} does not mount the spool directory"
        # A named volume, not a host path: it starts as a copy of the image's directory, owner included.
        assert volume in app_services["volumes"], name
        assert service.get("environment", {}).get("EVENT_SPOOL_PATH") in (None, str(spool_path())), name

"""The event spool as the image's runtime user meets it.

With PostgreSQL and Redis both down, events go to the spool file in the directory the Dockerfile makes
for that user, and the next event recorded once the database is back writes them first, in order. The
start-up check refuses a spool that user cannot write, such as the old default inside root's /app.

When the tests run as root, the work runs in a child that drops to the image's uid first. The child
is forked from a fresh forkserver process, not from this one (whose other threads may hold a lock at
the fork), and loads what the work needs before it drops its privileges: this environment's
interpreter may live where that uid cannot read.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from image_spec import created_dirs, env, runtime_uid
from ops_env import REPO, clean_env, free_port
from sqlalchemy import create_engine, text

from worker.infra.db import normalize_url
from worker.infra.eventlog import EventLog
from worker.infra.eventspool import check_spool_writable
from worker.infra.settings import Settings, SettingsError, load_settings

# As root, the work runs as the image's runtime uid; otherwise as this user, unprivileged already.
UID = runtime_uid() if os.geteuid() == 0 else os.geteuid()
EVENTS = 5


def _drop_and_run(send: Connection, work: Callable[[], Any], warm_up: Callable[[], Any] | None) -> None:
    try:
        if warm_up is not None:
            warm_up()  # as root: every module the work loads lazily is loaded now
        if os.geteuid() != UID:
            os.setgroups([])
            os.setgid(UID)
            os.setuid(UID)
        send.send((True, work()))
    except BaseException:
        send.send((False, traceback.format_exc()))


def as_runtime_user(work: Callable[[], Any], warm_up: Callable[[], Any] | None = None) -> Any:
    """``work()`` in a child running as the image's uid; its result, or its traceback as a failure.

    ``work`` and ``warm_up`` must pickle (module-level functions, ``functools.partial`` of them).
    """
    ctx = multiprocessing.get_context("forkserver")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_drop_and_run, args=(send, work, warm_up))
    child.start()
    send.close()
    try:
        assert receive.poll(120), "the unprivileged child did not answer"
        ok, value = receive.recv()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert ok, f"as uid {UID}:\n{value}"
    return value


@pytest.fixture
def image_root() -> Iterator[Path]:
    """A scratch root with the image's directories: the spool owned by the runtime uid, /app by root."""
    root = Path(tempfile.mkdtemp(prefix="syncworker-image-"))
    try:
        for made in created_dirs():
            path = root
            for part in made.path.relative_to("/").parts:
                path = path / part
                path.mkdir(exist_ok=True)
                path.chmod(0o755)
            if os.geteuid() != UID:
                os.chown(path, UID, UID)
            path.chmod(made.mode)
        (root / "app").mkdir(mode=0o555)  # WORKDIR: root's, read-only to the runtime user
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def image_spool(root: Path) -> Path:
    return root / Path(env()["EVENT_SPOOL_PATH"]).relative_to("/")


def settings_for(database_url: str, redis_url: str, spool: Path, prefix: str) -> Settings:
    return load_settings(
        _env_file=None,
        database_url=normalize_url(database_url),
        redis_url=redis_url,
        event_spool_path=str(spool),
        redis_key_prefix=prefix,
    )


def record(settings: Settings, event_type: str, count: int) -> None:
    log = EventLog.from_settings(settings)
    try:
        for n in range(count):
            log.record(event_type, aggregate_id=str(n), payload={"n": n})
    finally:
        log.close()


def record_while_down(spool: Path, down: Settings, marker: str) -> None:
    check_spool_writable(str(spool))  # what the worker checks at start-up
    record(down, marker, EVENTS)


def warm_up_recording(dead: Settings, live: Settings) -> None:
    record(dead, f"{dead.redis_key_prefix}.warmup", 1)
    record(live, f"{live.redis_key_prefix}.warmup", 1)


def old_default_in_app(app_dir: Path) -> str:
    # The image used to leave EVENT_SPOOL_PATH relative, so the spool landed in WORKDIR /app.
    os.chdir(app_dir)
    try:
        check_spool_writable(Settings.model_fields["event_spool_path"].default)
    except SettingsError as exc:
        return str(exc)
    return "accepted"


def test_events_wait_in_the_spool_as_the_runtime_user_and_are_replayed_in_order(
    image_root: Path, migrated_pg_url: str, own_redis_url: str, tmp_path: Path
) -> None:
    spool = image_spool(image_root)
    marker = f"spool.test.{uuid.uuid4().hex[:8]}"
    prefix = f"sw-spool-{uuid.uuid4().hex[:8]}"
    dead_pg = f"postgresql://postgres@127.0.0.1:{free_port()}/syncworker"
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    down = settings_for(dead_pg, dead_redis, spool, prefix)
    up = settings_for(migrated_pg_url, own_redis_url, spool, prefix)
    # Once as root first, in the child, so every module loaded lazily on these paths is loaded before
    # it drops its privileges (and with them the right to read this interpreter's own library).
    warm = tmp_path / "warm.spool"
    warm_up = functools.partial(
        warm_up_recording,
        settings_for(dead_pg, dead_redis, warm, f"{marker}"),
        settings_for(migrated_pg_url, own_redis_url, warm, f"{marker}"),
    )
    as_runtime_user(functools.partial(record_while_down, spool, down, marker), warm_up)

    lines = [json.loads(line) for line in spool.read_text().splitlines()]
    assert [(e["event_type"], e["aggregate_id"]) for e in lines] == [(marker, str(n)) for n in range(EVENTS)]
    assert spool.stat().st_uid == UID
    assert spool.stat().st_mode & 0o777 == 0o600

    # The database is back: the next event is written after the spooled ones, and the spool is gone.
    as_runtime_user(functools.partial(record, up, f"{marker}.after", 1), warm_up)
    assert not spool.exists()
    engine = create_engine(normalize_url(migrated_pg_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT event_type, aggregate_id, metadata->>'event_uuid' FROM event_log"
                    " WHERE event_type LIKE :marker ORDER BY id"
                ),
                {"marker": f"{marker}%"},
            ).all()
    finally:
        engine.dispose()
    stored = [(t, a) for t, a, _ in rows if not t.endswith(".warmup")]
    assert stored == [(marker, str(n)) for n in range(EVENTS)] + [(f"{marker}.after", "0")]
    assert [u for t, _, u in rows if t == marker] == [e["event_uuid"] for e in lines]


def test_the_start_up_check_refuses_a_spool_the_runtime_user_cannot_write(
    image_root: Path, tmp_path: Path
) -> None:
    warm_up = functools.partial(old_default_in_app, tmp_path)  # as root, in a directory it may write
    message = as_runtime_user(functools.partial(old_default_in_app, image_root / "app"), warm_up)
    assert "EVENT_SPOOL_PATH: cannot write events to syncworker-events.spool" in message
    assert "Permission denied" in message
    assert f"(uid {UID})" in message
    assert list((image_root / "app").iterdir()) == []


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_celery_refuses_to_start_with_an_unwritable_spool(role: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = clean_env(
        PYTHONPATH=str(REPO),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        EVENT_SPOOL_PATH=str(tmp_path / "a-file" / "events.spool"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", role],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "EVENT_SPOOL_PATH: cannot write events to" in done.stderr
    assert "not a directory" in done.stderr
    assert "Traceback" not in done.stderr

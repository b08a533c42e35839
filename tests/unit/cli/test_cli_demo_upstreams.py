"""The demo's upstreams and the files declaring them as an operator would: YAML, credential files, key."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from worker.demo.upstreams import (
    BREAKER,
    CREDENTIALS_DIR,
    ERP,
    KEY_FILE,
    NORTH,
    SOUTH,
    DemoUpstreams,
    demo_key,
    write_private,
)
from worker.sources.declarations import load_declarations


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def upstreams() -> Iterator[DemoUpstreams]:
    started = DemoUpstreams()
    started.start()
    yield started
    started.stop()


def test_the_declarations_apply_as_written(upstreams: DemoUpstreams, tmp_path: Path) -> None:
    path = upstreams.declare(tmp_path)
    # No environment: every credential must come from the files beside the YAML.
    sources = {s.name: s for s in load_declarations(path.read_text(), {}, base_dir=path.parent)}
    assert {name: s.kind for name, s in sources.items()} == {
        ERP: "odoo",
        NORTH: "woocommerce",
        SOUTH: "woocommerce",
    }
    for name, fields in upstreams.credentials().items():
        assert {f: v.get_secret_value() for f, v in sources[name].credentials.items()} == fields
        assert sources[name].breaker == BREAKER
    assert sources[NORTH].url == upstreams.shops[NORTH].base_url != sources[SOUTH].url
    assert sources[ERP].options == {"db": ERP, "username": upstreams.erp.login}
    assert sources[SOUTH].incremental_interval_seconds == 5


def test_the_yaml_holds_references_only(upstreams: DemoUpstreams, tmp_path: Path) -> None:
    text = upstreams.declare(tmp_path).read_text()
    assert [s for s in upstreams.secret_values() if s in text] == []
    assert text.count(f"file:{CREDENTIALS_DIR}/") == len(upstreams.secret_values()) == 5
    assert str(tmp_path) not in text


def test_credential_files_are_private_even_when_they_were_not(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    directory = tmp_path / CREDENTIALS_DIR
    directory.mkdir(mode=0o755)
    (directory / f"{NORTH}.consumer_key").write_text("left over")
    (directory / f"{NORTH}.consumer_key").chmod(0o644)
    upstreams.declare(tmp_path)
    assert mode(directory) == 0o700
    files = sorted(directory.iterdir())
    assert len(files) == 5
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert (directory / f"{NORTH}.consumer_key").read_text().strip() == upstreams.shops[NORTH].consumer_key


def test_write_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old and longer than the new one")
    path.chmod(0o666)
    write_private(path, "new")
    assert (path.read_text(), mode(path)) == ("new", 0o600)


def test_the_key_is_made_once_then_kept(tmp_path: Path) -> None:
    first = demo_key(tmp_path)
    Fernet(first)
    assert mode(tmp_path / KEY_FILE) == 0o600
    # Credentials sealed by an earlier demo in the same directory must still open.
    assert demo_key(tmp_path) == first


def test_a_damaged_key_file_stops_the_demo_without_quoting_it(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("not-a-fernet-key-but-maybe-secret\n")
    with pytest.raises(RuntimeError) as failure:
        demo_key(tmp_path)
    assert str(tmp_path / KEY_FILE) in str(failure.value)
    assert "maybe-secret" not in str(failure.value)


def test_one_shop_goes_down_while_the_other_answers(upstreams: DemoUpstreams) -> None:
    north, south = upstreams.shops[NORTH], upstreams.shops[SOUTH]
    south.faults.set(kind="down")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{south.base_url}/wp-json", timeout=5)
    assert requests.get(f"{north.base_url}/wp-json", timeout=5).status_code == 200
    south.faults.clear()
    assert requests.get(f"{south.base_url}/wp-json", timeout=5).status_code == 200


def test_stop_takes_every_simulator_down() -> None:
    upstreams = DemoUpstreams()
    upstreams.start()
    urls = [sim.base_url for sim in upstreams.simulators()]
    upstreams.stop()
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)

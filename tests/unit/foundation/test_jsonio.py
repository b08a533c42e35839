"""JSON columns are written by orjson, with the standard library for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

import models
from worker.infra import jsonio
from worker.infra.db import make_engine, upgrade_database


@pytest.mark.parametrize(
    "value",
    [
        {"name": "Caf\u00e9 \U0001f600", "price": "12.50", "meta": [{"key": "k", "value": None}], "n": -3},
        {"huge": 2**70},
        {1: "int key"},
    ],
    ids=["ordinary", "beyond-64-bits", "non-string-key"],
)
def test_dumps_reads_back_as_the_standard_library_would(value: Any) -> None:
    assert json.loads(jsonio.dumps(value)) == json.loads(json.dumps(value))


def test_a_raw_record_round_trips_through_the_database(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    payload = {"body": "\u00fcnicode", "big": 2**70, "nested": {"list": [1, 2.5, True, None]}}
    with engine.begin() as conn:
        conn.execute(models.EventLog.__table__.insert().values(event_type="t", payload=payload, metadata={}))
        stored = conn.execute(select(models.EventLog.payload)).scalar_one()
    engine.dispose()
    assert stored == payload

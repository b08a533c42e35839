"""Two `celery beat` processes with RedBeat against one Redis: one leads, the other stands by."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from celery import Celery
from e2e_harness import Stack, wait_until

from worker.infra.settings import Settings

pytestmark = pytest.mark.e2e
SENDING = "Sending due task sync:"
QUEUE = "sync-incremental"


def test_two_beats_never_double_fire(stack: Stack, e2e_settings: Settings, client_app: Celery) -> None:
    stack.env["SYNC_INCREMENTAL_INTERVAL_SECONDS"] = "1"
    beats = [stack.beat(), stack.beat()]
    broker = redis.Redis.from_url(e2e_settings.broker_url)
    try:
        # No worker consumes: every tick either beat sends stays on the queue to be counted.
        wait_until(lambda: broker.llen(QUEUE) >= 5, timeout=90, what="five scheduled ticks")
        for beat in beats:
            beat.destroy()
        sends = [beat.log().count(SENDING) for beat in beats]
        leaders = [beat for beat in beats if "beat: Acquired lock" in beat.log()]
        assert len(leaders) == 1, [beat.log()[-2000:] for beat in beats]
        # Only the lock holder ever sent, and the queue holds exactly what it sent.
        assert sorted(sends) == [0, broker.llen(QUEUE)]
        messages = broker.lrange(QUEUE, 0, -1)
        assert all(b'"tasks.sync.sync_source"' in m for m in messages)
        # Only the source's name and ``full`` travel: no credential ever sits in the broker.
        bodies = [base64.b64decode(json.loads(m)["body"]) for m in messages]
        sources = {"woocommerce-products", "odoo-suppliers"}
        assert all(json.loads(b)[:2] in ([[], {"source": s, "full": False}] for s in sources) for b in bodies)
        secrets = [s.encode() for s in e2e_settings.secret_values()]
        assert secrets
        assert not [m for m in messages + bodies for s in secrets if s in m]
    finally:
        broker.close()

"""HostThrottle: the hidden rate and burst, the Retry-After share, counters, the arrival log, control."""

from __future__ import annotations

import json

import pytest

from worker.sandbox.faults import FaultSpecError
from worker.sandbox.throttle import (
    HostThrottle,
    ThrottleCounts,
    ThrottleSpec,
    answer_throttle_control,
    throttle_response,
)
from worker.sandbox.wire import Request

PATH = "/wp-json/wc/v3/products"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def throttle_at(clock: FakeClock, **options: object) -> HostThrottle:
    throttle = HostThrottle(clock=clock)
    throttle.set(**options)
    return throttle


def verdicts(throttle: HostThrottle, n: int, tenant: str = "shop-001") -> list[bool]:
    """True for each request let through; every admission is logged as its answer would be."""
    out = []
    for _ in range(n):
        admission = throttle.admit(tenant, PATH)
        throttle.done(admission, 429 if admission.throttled else 200)
        out.append(not admission.throttled)
    return out


def test_off_by_default_everything_passes_and_is_counted() -> None:
    throttle = HostThrottle(clock=FakeClock())
    assert all(verdicts(throttle, 500))
    assert throttle.counts == ThrottleCounts(requests=500, admitted=500)


def test_a_full_bucket_lets_exactly_the_burst_through_at_once() -> None:
    throttle = throttle_at(FakeClock(), rate=10, burst=4)
    assert verdicts(throttle, 6) == [True, True, True, True, False, False]


def test_the_rate_is_held_over_time_whatever_the_client_sends() -> None:
    clock = FakeClock()
    throttle = throttle_at(clock, rate=20, burst=4)
    admitted = 0
    # 200 requests a second for 30 seconds: only about 20 a second may get through.
    for _ in range(6000):
        clock.now += 0.005
        admitted += verdicts(throttle, 1)[0]
    assert 20 * 30 <= admitted <= 20 * 30 + 4
    assert throttle.counts.admitted == admitted and throttle.counts.throttled == 6000 - admitted


def test_a_client_under_the_rate_is_never_refused() -> None:
    clock = FakeClock()
    throttle = throttle_at(clock, rate=20, burst=1)
    for _ in range(1000):
        clock.now += 1 / 19.5
        assert verdicts(throttle, 1) == [True]


def test_refused_requests_take_no_token() -> None:
    clock = FakeClock()
    throttle = throttle_at(clock, rate=10, burst=1)
    assert verdicts(throttle, 50) == [True] + [False] * 49
    clock.now += 0.1
    assert verdicts(throttle, 2) == [True, False]


def test_every_tenant_shares_the_one_host_bucket() -> None:
    throttle = throttle_at(FakeClock(), rate=5, burst=2)
    assert verdicts(throttle, 1, "shop-001") + verdicts(throttle, 1, "shop-002") == [True, True]
    assert verdicts(throttle, 1, "shop-003") == [False]


@pytest.mark.parametrize(("share", "low", "high"), [(0.0, 0, 0), (1.0, 1000, 1000), (0.3, 240, 360)],
                         ids=["never", "always", "a-share"])  # fmt: skip
def test_a_share_of_the_429s_carries_retry_after(share: float, low: int, high: int) -> None:
    throttle = throttle_at(FakeClock(), rate=1, burst=1, retry_after_share=share, retry_after=7, seed=3)
    throttle.admit("shop-001", PATH)
    hints = [throttle.admit("shop-001", PATH).retry_after for _ in range(1000)]
    assert low <= sum(h == 7 for h in hints) <= high
    assert set(hints) <= {None, 7}
    counts = throttle.counts
    assert counts.throttled == 1000 and low <= counts.throttled_with_retry_after <= high
    assert counts.throttled_without_retry_after == 1000 - counts.throttled_with_retry_after


def test_the_share_is_deterministic_for_a_seed() -> None:
    def hints(seed: int) -> list[int | None]:
        throttle = throttle_at(FakeClock(), rate=1, burst=1, retry_after_share=0.5, seed=seed)
        return [throttle.admit("", PATH).retry_after for _ in range(200)]

    assert hints(1) == hints(1) != hints(2)


def test_the_429_is_the_edge_page_not_a_woocommerce_error() -> None:
    throttle = throttle_at(FakeClock(), rate=1, burst=1, retry_after_share=1.0, retry_after=1)
    throttle.admit("", PATH)
    response = throttle_response(throttle.admit("", PATH))
    assert response.status == 429 and response.content_type == "text/html"
    assert b"429 Too Many Requests" in response.body and len(response.body) < 512
    assert ("Retry-After", "1") in response.headers
    throttle.set(rate=1, burst=1)
    throttle.admit("", PATH)
    assert throttle_response(throttle.admit("", PATH)).headers == []


def test_the_arrival_log_keeps_time_tenant_path_and_status_and_is_bounded() -> None:
    clock = FakeClock()
    throttle = HostThrottle(ThrottleSpec(rate=1, burst=1), log_size=3, clock=clock)
    for tenant, at in (("a", 100.25), ("b", 100.5), ("c", 100.75), ("d", 101.25)):
        clock.now = at
        verdicts(throttle, 1, tenant)
    log = throttle.arrivals()
    assert [(a.at, a.tenant, a.status) for a in log] == [
        (100.5, "b", 429),
        (100.75, "c", 429),
        (101.25, "d", 200),
    ]
    assert {a.path for a in log} == {PATH}
    assert throttle.counts.requests == 4


def test_reset_counters_empties_counts_and_log_and_set_refills_the_bucket() -> None:
    throttle = throttle_at(FakeClock(), rate=1, burst=2)
    verdicts(throttle, 5)
    throttle.reset_counters()
    assert throttle.counts == ThrottleCounts() and throttle.arrivals() == []
    assert verdicts(throttle, 1) == [False]
    throttle.set(rate=1, burst=2)
    assert verdicts(throttle, 3) == [True, True, False]


def test_clear_lifts_the_limit() -> None:
    throttle = throttle_at(FakeClock(), rate=1, burst=1)
    verdicts(throttle, 3)
    throttle.clear()
    assert all(verdicts(throttle, 50)) and throttle.spec == ThrottleSpec()


@pytest.mark.parametrize(
    "options",
    [{"rate": 0}, {"rate": 5, "burst": 0}, {"retry_after_share": 1.5}, {"retry_after": -1},
     {"retry_after": 1.5}, {"rate": "fast"}, {"limit": 3}],
    ids=["rate", "burst", "share", "retry-after", "retry-after-fraction", "rate-type", "unknown-option"],
)  # fmt: skip
def test_invalid_throttles_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(FaultSpecError):
        HostThrottle().set(**options)


def control(throttle: HostThrottle, method: str, query: str = "", body: object = None) -> tuple[int, dict]:
    raw = b"" if body is None else json.dumps(body).encode()
    query_dict = {k: [v] for k, _, v in (p.partition("=") for p in query.split("&") if p)}
    request = Request(method, "/__throttle__", query_dict, query, {}, raw)
    response = answer_throttle_control(throttle, request)
    return response.status, json.loads(response.body)


def test_the_control_endpoint_sets_shows_and_resets() -> None:
    throttle = HostThrottle(clock=FakeClock())
    status, body = control(throttle, "POST", body={"rate": 2, "burst": 1, "retry_after_share": 1})
    assert status == 200 and body["throttle"]["rate"] == 2
    verdicts(throttle, 3)
    status, body = control(throttle, "GET", "log=1&reset=1")
    assert body["counts"]["throttled"] == 2 and body["counts"]["throttled_with_retry_after"] == 2
    assert [row[1:] for row in body["arrivals"]] == [["shop-001", PATH, 200]] + [["shop-001", PATH, 429]] * 2
    assert throttle.counts == ThrottleCounts()
    assert "arrivals" not in control(throttle, "GET")[1]
    assert control(throttle, "POST", body={"rate": -3})[0] == 400
    assert control(throttle, "POST", body=[1])[0] == 400
    assert control(throttle, "DELETE")[1]["throttle"]["rate"] is None
    assert control(throttle, "PUT")[0] == 405

"""The retry policy as pure decisions, and composed with the breaker and the failure recorder."""

from __future__ import annotations

from typing import Any

import pytest
import tenacity
from tenacity import RetryCallState
from upstream_helpers import FakeBreaker, FakeEventLog

from worker.infra.errors import (
    CircuitOpenError,
    FatalUpstreamError,
    MalformedPayload,
    RetriableUpstreamError,
)
from worker.upstream.calls import GuardedCall
from worker.upstream.failures import FailureRecorder
from worker.upstream.retry import build_retrying


def state_after(exc: BaseException, attempt: int = 1) -> RetryCallState:
    st = RetryCallState(tenacity.Retrying(), None, (), {})
    st.attempt_number = attempt
    st.set_exception((type(exc), exc, None))
    return st


@pytest.fixture
def settings(settings_factory: Any) -> Any:
    return settings_factory(
        retry_max_attempts=4,
        retry_initial_backoff_seconds=1.0,
        retry_max_backoff_seconds=8.0,
        retry_after_cap_seconds=60.0,
        retry_max_delay_seconds=120.0,
    )


def test_wait_honours_retry_after_and_caps_it(settings: Any) -> None:
    wait = build_retrying(settings).wait
    assert wait(state_after(RetriableUpstreamError("x", retry_after=12))) == 12.0
    assert wait(state_after(RetriableUpstreamError("x", retry_after=3600))) == 60.0


def test_wait_without_retry_after_is_jittered_exponential(settings: Any) -> None:
    wait = build_retrying(settings).wait
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 8.0), (9, 8.0)]:
        values = {wait(state_after(RetriableUpstreamError("x"), attempt)) for _ in range(50)}
        assert all(0 <= v <= ceiling for v in values)
        assert len(values) > 1  # jittered, not a fixed delay


def test_retry_predicate_only_retriable(settings: Any) -> None:
    retry = build_retrying(settings).retry
    assert retry(state_after(RetriableUpstreamError("x")))
    assert retry(state_after(MalformedPayload("x")))
    assert not retry(state_after(FatalUpstreamError("x")))
    assert not retry(state_after(CircuitOpenError("b", 5)))


def guarded(settings: Any, breaker: FakeBreaker, log: FakeEventLog, sleeps: list[float]) -> GuardedCall:
    recorder = FailureRecorder(
        "woocommerce", log, breaker, settings, base_url="http://127.0.0.1:1", correlation_id="run-1"
    )
    return GuardedCall(breaker, build_retrying(settings, sleep=sleeps.append), recorder)


def failing(errors: list[BaseException]) -> Any:
    def fn() -> str:
        if errors:
            raise errors.pop(0)
        return "done"

    return fn


def test_retries_until_success_and_records_each_failed_attempt(settings: Any) -> None:
    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    errs: list[BaseException] = [
        RetriableUpstreamError("503", operation="fetch_products", status_code=503, retry_after=5),
        MalformedPayload("html", operation="fetch_products", status_code=200),
    ]
    assert guarded(settings, breaker, log, sleeps)("fetch_products", failing(errs)) == "done"
    assert breaker.calls == 3
    assert sleeps[0] == 5.0 and 0 <= sleeps[1] <= 2.0
    assert [e.payload["attempt"] for e in log.events] == [1, 2]
    assert all(not e.payload["final"] for e in log.events)
    assert {e.event_type for e in log.events} == {"woocommerce.sync.failed.fetch_products"}
    assert log.events[0].correlation_id == "run-1"
    assert log.events[0].payload["retry_after"] == 5
    assert log.events[1].payload["error_class"] == "MalformedPayload"
    assert log.events[0].metadata["retry_policy"]["max_attempts"] == 4


def test_gives_up_after_max_attempts_with_a_final_row(settings: Any) -> None:
    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    errs: list[BaseException] = [RetriableUpstreamError("boom", operation="op") for _ in range(10)]
    with pytest.raises(RetriableUpstreamError):
        guarded(settings, breaker, log, sleeps)("op", failing(errs))
    assert breaker.calls == 4 and len(sleeps) == 3
    assert [(e.payload["attempt"], e.payload["final"]) for e in log.events] == [
        (1, False), (2, False), (3, False), (4, True),
    ]  # fmt: skip


def test_fatal_error_is_not_retried(settings: Any) -> None:
    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    errs: list[BaseException] = [FatalUpstreamError("404", operation="op", status_code=404)]
    with pytest.raises(FatalUpstreamError):
        guarded(settings, breaker, log, sleeps)("op", failing(errs))
    assert breaker.calls == 1 and sleeps == []
    assert [(e.payload["attempt"], e.payload["final"]) for e in log.events] == [(1, True)]


def test_open_breaker_stops_the_loop_at_once(settings: Any) -> None:
    breaker, log, sleeps = FakeBreaker(threshold=2), FakeEventLog(), []
    errs: list[BaseException] = [RetriableUpstreamError("503", operation="op") for _ in range(10)]
    with pytest.raises(CircuitOpenError):
        guarded(settings, breaker, log, sleeps)("op", failing(errs))
    # Two real attempts opened the breaker; the third was refused and nothing more was tried.
    assert breaker.calls == 2 and breaker.refused == 1 and len(sleeps) == 2
    final = log.events[-1].payload
    assert final["error_class"] == "CircuitOpenError" and final["final"] is True
    assert final["breaker_state"] == "open" and final["attempt"] == 3


def test_retry_after_beyond_the_delay_budget_stops_instead_of_sleeping(settings_factory: Any) -> None:
    s = settings_factory(retry_max_attempts=5, retry_max_delay_seconds=30.0)
    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    errs: list[BaseException] = [RetriableUpstreamError("maint", operation="op", retry_after=600)]
    with pytest.raises(RetriableUpstreamError):
        guarded(s, breaker, log, sleeps)("op", failing(errs))
    assert sleeps == [] and breaker.calls == 1


def test_a_paced_host_refusing_is_sent_again_without_using_an_attempt(settings: Any) -> None:
    """With a request budget the refusal already slowed the fleet: no backoff, no attempt spent."""
    from worker.infra.errors import RateLimited

    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    breaker.budget_host = "shop.example"  # type: ignore[attr-defined]
    errs: list[BaseException] = [
        RateLimited("429", operation="op", status_code=429, retry_after=2) for _ in range(6)
    ]
    assert guarded(settings, breaker, log, sleeps)("op", failing(errs)) == "done"
    assert breaker.calls == 7  # six refusals absorbed, then the call that succeeded
    assert sleeps == []  # the budget sleeps for the slot, tenacity adds nothing
    assert log.events == []  # not failed attempts: the budget writes its own threshold events


def test_without_a_budget_a_refusal_is_an_ordinary_retried_failure(settings: Any) -> None:
    from worker.infra.errors import RateLimited

    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    errs: list[BaseException] = [RateLimited("429", operation="op", status_code=429, retry_after=2)]
    assert guarded(settings, breaker, log, sleeps)("op", failing(errs)) == "done"
    assert sleeps == [2.0] and [e.payload["attempt"] for e in log.events] == [1]


def test_absorbed_refusals_are_bounded_per_attempt(settings: Any) -> None:
    from worker.infra.errors import RateLimited
    from worker.upstream.calls import ABSORBED_REFUSALS_PER_ATTEMPT

    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    breaker.budget_host = "shop.example"  # type: ignore[attr-defined]
    errs: list[BaseException] = [RateLimited("429", operation="op", status_code=429) for _ in range(1000)]
    with pytest.raises(RateLimited):
        guarded(settings, breaker, log, sleeps)("op", failing(errs))
    # Each of the 4 attempts absorbs its share, then fails as a retriable error would.
    assert breaker.calls == 4 * (ABSORBED_REFUSALS_PER_ATTEMPT + 1)
    assert [e.payload["final"] for e in log.events] == [False, False, False, True]

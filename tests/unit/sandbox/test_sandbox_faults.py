"""FaultInjector selection logic: paths, rate, every, count, validation, counters, listeners."""

from __future__ import annotations

import pytest

from worker.sandbox.faults import FaultInjector, FaultSpec, FaultSpecError


def kinds(faults: FaultInjector, path: str, n: int) -> list[str | None]:
    return [(d.fault.kind if d.fault else None) for d in (faults.decide(path) for _ in range(n))]


def test_no_fault_by_default_but_requests_are_counted() -> None:
    faults = FaultInjector()
    assert kinds(faults, "/a", 3) == [None, None, None]
    faults.decide("/b/c")
    assert faults.counts == {"/a": 3, "/b/c": 1}
    assert faults.requests("/b") == 1 and faults.requests() == 4
    faults.reset_counters()
    assert faults.requests() == 0


def test_count_applies_to_the_next_n_requests_then_clears() -> None:
    faults = FaultInjector()
    faults.set(kind="status", status=502, count=2, latency_ms=5)
    assert kinds(faults, "/x", 4) == ["status", "status", None, None]
    assert faults.decide("/x").latency_s == pytest.approx(0.005)
    assert faults.injected == {"status": 2}


def test_every_nth_request() -> None:
    faults = FaultInjector()
    faults.set(kind="html200", every=3)
    assert kinds(faults, "/x", 6) == [None, None, "html200", None, None, "html200"]


def test_rate_is_deterministic_for_a_seed() -> None:
    a, b = FaultInjector(), FaultInjector()
    a.set(kind="status", rate=0.3, seed=9)
    b.set(kind="status", rate=0.3, seed=9)
    first, second = kinds(a, "/x", 200), kinds(b, "/x", 200)
    assert first == second
    assert 20 < first.count("status") < 100


def test_paths_restrict_by_prefix_or_sub_path() -> None:
    faults = FaultInjector()
    faults.set(kind="truncated", paths=["/variations"])
    assert kinds(faults, "/wp-json/wc/v3/products/12/variations", 1) == ["truncated"]
    assert kinds(faults, "/wp-json/wc/v3/products", 1) == [None]
    faults.set(kind="auth", paths="/json/2/")
    assert kinds(faults, "/json/2/res.partner/search", 1) == ["auth"]
    assert kinds(faults, "/web/version", 1) == [None]


def test_clear_removes_everything() -> None:
    faults = FaultInjector()
    faults.set(kind="hang", latency_ms=100)
    faults.clear()
    decision = faults.decide("/x")
    assert decision.fault is None and decision.latency_s == 0


@pytest.mark.parametrize(
    "options",
    [
        {"kind": "explode"},
        {"kind": "status", "status": 200},
        {"kind": "auth", "auth_status": 500},
        {"rate": 1.5},
        {"every": 0},
        {"count": 0},
        {"latency": 5},
    ],
    ids=["kind", "status", "auth-status", "rate", "every", "count", "unknown-option"],
)
def test_invalid_specs_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(FaultSpecError):
        FaultInjector().set(**options)


def test_listeners_hear_every_change_and_down_expires_by_itself() -> None:
    faults = FaultInjector()
    heard: list[str | None] = []
    faults.subscribe(lambda spec: heard.append(spec.kind))
    faults.set(kind="down")
    faults.clear()
    assert heard == [None, "down", None]


def test_down_is_not_a_per_request_fault() -> None:
    faults = FaultInjector()
    faults.set(kind="down", latency_ms=0)
    assert faults.decide("/x").fault is None


def test_spec_round_trips_through_a_mapping() -> None:
    spec = FaultSpec.from_mapping(
        {"kind": "status", "status": 429, "retry_after": "Wed, 21 Oct 2026 07:28:00 GMT"}
    )
    assert FaultSpec.from_mapping(spec.as_dict()) == spec

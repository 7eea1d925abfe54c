"""Active probes: never buy an image; when to probe; how to read the answer."""

from __future__ import annotations

import pytest

from imagegate.policy.health import (
    PROBE_BODY,
    HealthConfig,
    HealthState,
    interpret,
    observe_traffic,
    record_probe,
    should_probe,
)


def test_probe_body_is_invalid_for_every_model() -> None:
    # Azure: prompt minLength 1 and n ≥ 1 — the request is rejected before any generation.
    assert PROBE_BODY["prompt"] == ""
    assert PROBE_BODY["n"] == 0


@pytest.mark.parametrize(
    ("status", "code", "timed_out", "verdict"),
    [
        (400, None, False, "healthy"),
        (401, None, False, "unhealthy"),
        (403, None, False, "unhealthy"),
        (404, "DeploymentNotFound", False, "unhealthy"),
        (429, None, False, "throttled"),
        (500, None, False, "unhealthy"),
        (503, None, False, "unhealthy"),
        (None, None, False, "unhealthy"),
        (None, None, True, "unhealthy"),
        (200, None, False, "healthy"),
        (302, None, False, "unhealthy"),
    ],
)
def test_interpret(status: int | None, code: str | None, timed_out: bool, verdict: str) -> None:
    r = interpret(status, upstream_code=code, timed_out=timed_out)
    assert r.verdict == verdict
    assert r.healthy is (verdict != "unhealthy")
    assert r.reason


def test_404_reason_distinguishes_deployment() -> None:
    assert "deployment not found" in interpret(404, upstream_code="DeploymentNotFound").reason
    assert "route not found" in interpret(404).reason


CFG = HealthConfig(interval_s=60, open_interval_s=10, idle_s=30)


@pytest.mark.parametrize(
    ("last_probe", "last_traffic", "now", "closed", "expected"),
    [
        (None, None, 0.0, True, True),  # never probed, no traffic
        (None, 90.0, 100.0, True, False),  # live traffic is evidence enough
        (None, 60.0, 100.0, True, True),  # idle 40 s
        (70.0, 0.0, 100.0, True, False),  # probed 30 s ago, interval 60
        (35.0, 0.0, 100.0, True, True),
        (95.0, 99.0, 100.0, False, False),  # breaker open: every 10 s even with traffic
        (89.0, 99.0, 100.0, False, True),
    ],
)
def test_should_probe(
    last_probe: float | None, last_traffic: float | None, now: float, closed: bool, expected: bool
) -> None:
    s = HealthState()
    if last_traffic is not None:
        s = observe_traffic(s, last_traffic)
    if last_probe is not None:
        s = record_probe(s, interpret(400), last_probe)
    assert should_probe(CFG, s, now, breaker_closed=closed) is expected

"""The typed recorders: every observation lands in its own labelled series."""

from __future__ import annotations

from decimal import Decimal

from imagegate.server.metrics import GatewayMetrics


def _value(m: GatewayMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_repeated_observations_accumulate_per_label_set() -> None:
    m = GatewayMetrics()
    for _ in range(3):
        m.observe_request(route="/v1/images/generations", method="POST", status=200, duration_s=0.5)
    m.observe_request(route="/v1/images/generations", method="POST", status=429, duration_s=0.01)
    m.observe_attempt(deployment="east", outcome="ok", duration_s=2.0)
    m.observe_attempt(deployment="east", outcome="rate_limited")
    m.observe_attempt(deployment="west", outcome="ok", duration_s=4.0)
    m.observe_cost(model="gpt-image-1", deployment="east", usd=Decimal("0.011"))
    m.observe_cost(model="gpt-image-1", deployment="east", usd=Decimal("0.011"))
    route = {"route": "/v1/images/generations", "method": "POST"}
    assert _value(m, "imagegate_requests_total", **route, status="200") == 3
    assert _value(m, "imagegate_requests_total", **route, status="429") == 1
    assert _value(m, "imagegate_request_duration_seconds_count", route="/v1/images/generations") == 4
    assert _value(m, "imagegate_upstream_attempts_total", deployment="east", outcome="ok") == 1
    assert _value(m, "imagegate_upstream_attempts_total", deployment="east", outcome="rate_limited") == 1
    assert _value(m, "imagegate_upstream_attempts_total", deployment="west", outcome="ok") == 1
    assert _value(m, "imagegate_upstream_duration_seconds_sum", deployment="west") == 4.0
    assert _value(m, "imagegate_cost_usd_total", model="gpt-image-1", deployment="east") == 0.022
    # each app's metrics are its own, cached children included
    other = GatewayMetrics()
    other.observe_attempt(deployment="east", outcome="ok")
    assert _value(other, "imagegate_upstream_attempts_total", deployment="east", outcome="ok") == 1
    assert _value(m, "imagegate_upstream_attempts_total", deployment="east", outcome="ok") == 1

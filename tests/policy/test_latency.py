"""Latency estimates: time-decayed EWMA and a p95-ish figure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.policy.latency import LatencyConfig, LatencyEstimate, estimate, observe, p95

CFG = LatencyConfig(prior_s=15.0, alpha_min=0.2, half_life_s=60.0)


def test_unknown_reads_as_prior() -> None:
    assert estimate(CFG, None) == 15.0
    assert p95(CFG, LatencyEstimate()) == 30.0


def test_first_sample_is_the_estimate() -> None:
    e = observe(CFG, LatencyEstimate(), 8.0, 0.0)
    assert estimate(CFG, e) == 8.0 and p95(CFG, e) == 8.0


@pytest.mark.parametrize(
    ("gap_s", "expected"),
    [
        (0.0, 8.0 + 0.2 * 10),  # back-to-back: alpha_min
        (60.0, 8.0 + 0.6 * 10),  # one half-life: 1 - 0.8 / 2
        (6000.0, 18.0),  # long quiet: the fresh sample dominates
    ],
)
def test_weight_grows_with_time_since_last_sample(gap_s: float, expected: float) -> None:
    e = observe(CFG, LatencyEstimate(), 8.0, 0.0)
    e = observe(CFG, e, 18.0, gap_s)
    assert estimate(CFG, e) == pytest.approx(expected, abs=1e-6)


def test_p95_above_mean_with_spread() -> None:
    e = LatencyEstimate()
    for i, x in enumerate([10, 20] * 20):
        e = observe(CFG, e, x, float(i))
    assert 12 < estimate(CFG, e) < 18
    assert p95(CFG, e) > estimate(CFG, e) + 5


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="alpha_min"):
        LatencyConfig(alpha_min=0)


@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(-5, 300)), min_size=1, max_size=50))
def test_estimate_stays_within_observed_range(samples: list[tuple[float, float]]) -> None:
    e = LatencyEstimate()
    now = 0.0
    for dt, x in samples:
        now += dt
        e = observe(CFG, e, x, now)
    xs = [max(0.0, x) for _, x in samples]
    assert min(xs) - 1e-6 <= estimate(CFG, e) <= max(xs) + 1e-6
    assert p95(CFG, e) >= estimate(CFG, e) - 1e-9

"""Routing: filters with reasons, each strategy's order, spill-over, and hypothesis invariants."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate.policy.routing import (
    STRATEGIES,
    Candidate,
    RoutePolicy,
    Signals,
    Strategy,
    plan,
    retry_after_from,
)

A = Candidate(name="a", region="swedencentral", priority=0, weight=1, cost_per_image=0.04)
B = Candidate(name="b", region="eastus2", priority=1, weight=3, cost_per_image=0.02)
C = Candidate(
    name="c", region="westeurope", priority=1, weight=0, cost_per_image=0.03, tags=frozenset({"eu"})
)
ALL = (A, B, C)


@pytest.mark.parametrize(
    ("strategy", "signals", "rand", "expected"),
    [
        ("priority", {}, 0.0, ("a", "b", "c")),
        ("lowest_cost", {}, 0.0, ("b", "c", "a")),
        (
            "least_latency",
            {"a": Signals(latency_s=20), "b": Signals(latency_s=9), "c": Signals(latency_s=12)},
            0.0,
            ("b", "c", "a"),
        ),
        ("least_latency", {"b": Signals(latency_s=9)}, 0.0, ("b", "a", "c")),  # unknown: last, by priority
        (
            "most_headroom",
            {"a": Signals(headroom=0.2), "b": Signals(headroom=0.9), "c": Signals(headroom=0.5)},
            0.0,
            ("b", "c", "a"),
        ),
        ("weighted", {}, 0.0, ("a", "b", "c")),  # rand in a's quarter; zero weight last
        ("weighted", {}, 0.3, ("b", "a", "c")),
        ("weighted", {}, 0.99, ("b", "a", "c")),
    ],
)
def test_strategy_order(
    strategy: Strategy, signals: dict[str, Signals], rand: float, expected: tuple[str, ...]
) -> None:
    assert plan(RoutePolicy(strategy=strategy), ALL, signals, rand=rand).names == expected


def test_region_cost_multipliers() -> None:
    p = RoutePolicy(strategy="lowest_cost", region_cost_multipliers={"eastus2": 3.0})
    assert plan(p, ALL).names == ("c", "a", "b")  # b: 0.02 × 3 = 0.06


def test_filters_explain_every_exclusion() -> None:
    incapable = Candidate(
        name="d", region="eastus2", capable=False, incapable_reason="dall-e-3 supports n=1 only"
    )
    p = RoutePolicy(
        allowed_regions=frozenset({"swedencentral", "eastus2", "westeurope"}), required_tags=frozenset()
    )
    sig = {
        "b": Signals(breaker_available=False, breaker_until=130.0, breaker_reason="breaker open: status 429")
    }
    out = plan(p, (*ALL, incapable, Candidate(name="e", region="japaneast")), sig)
    assert out.names == ("a", "c")
    why = {e.name: (e.code, e.reason) for e in out.excluded}
    assert why == {
        "b": ("breaker", "breaker open: status 429"),
        "d": ("capability", "dall-e-3 supports n=1 only"),
        "e": ("region", "region japaneast not in allowed regions (eastus2, swedencentral, westeurope)"),
    }
    assert out.retry_after_s(100.0) == 30.0


def test_required_tags() -> None:
    out = plan(RoutePolicy(required_tags=frozenset({"eu"})), ALL)
    assert out.names == ("c",)
    assert {e.code for e in out.excluded} == {"tags"}


def test_spill_over_moves_saturated_behind_free() -> None:
    sig = {"a": Signals(headroom=0.0)}
    assert plan(RoutePolicy(), ALL, sig).names == ("b", "c", "a")
    assert plan(RoutePolicy(spill_over=False), ALL, sig).names == ("a", "b", "c")


def test_empty_plan_has_no_retry_after_without_breaker_exclusions() -> None:
    out = plan(RoutePolicy(allowed_regions=frozenset()), ALL)
    assert out.ranked == () and out.retry_after_s(0.0) is None


def test_duplicate_names_and_unknown_strategy_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        plan(RoutePolicy(), (A, A))
    with pytest.raises(ValueError, match="strategy='fastest'"):
        RoutePolicy(strategy="fastest")  # type: ignore[arg-type]


def test_weighted_first_pick_follows_weights() -> None:
    cands = (Candidate(name="x", weight=1), Candidate(name="y", weight=3))
    firsts = Counter(
        plan(RoutePolicy(strategy="weighted"), cands, rand=i / 1000).names[0] for i in range(1000)
    )
    assert firsts == {"x": 250, "y": 750}


names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
cand = st.builds(
    Candidate,
    name=names,
    region=st.sampled_from(["eu", "us", "asia"]),
    priority=st.integers(0, 3),
    weight=st.floats(0, 5),
    cost_per_image=st.one_of(st.none(), st.floats(0, 1)),
    capable=st.booleans(),
)
sig = st.builds(
    Signals,
    breaker_available=st.booleans(),
    headroom=st.floats(0, 1),
    latency_s=st.one_of(st.none(), st.floats(0, 100)),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(cand, max_size=8, unique_by=lambda c: c.name),
    st.dictionaries(names, sig),
    st.sampled_from(STRATEGIES),
    st.floats(0, 1),
    st.one_of(st.none(), st.frozensets(st.sampled_from(["eu", "us", "asia"]))),
)
def test_invariant_partition_and_filters(
    cands: list[Candidate],
    sigs: dict[str, Signals],
    strategy: Strategy,
    rand: float,
    regions: frozenset[str] | None,
) -> None:
    out = plan(RoutePolicy(strategy=strategy, allowed_regions=regions), cands, sigs, rand=rand)
    ranked = out.names
    excluded = [e.name for e in out.excluded]
    # every candidate is either ranked once or excluded once, with a reason
    assert sorted([*ranked, *excluded]) == sorted(c.name for c in cands)
    assert len(set(ranked)) == len(ranked)
    assert all(e.reason for e in out.excluded)
    for c in out.ranked:
        s = sigs.get(c.name, Signals())
        assert c.capable and s.breaker_available
        assert regions is None or c.region in regions
    # spill-over: nothing with headroom comes after something saturated
    full = [sigs.get(n, Signals()).headroom <= 0 for n in ranked]
    assert full == sorted(full)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(30.0, 30.0), (1e-12, 0.001), (-5.0, 0.001), (0.0104, 0.011), (2.0000000001, 2.0)],
)
def test_retry_after_is_whole_milliseconds_and_never_zero(seconds: float, expected: float) -> None:
    assert retry_after_from(seconds) == expected

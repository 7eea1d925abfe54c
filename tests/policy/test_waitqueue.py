"""Fair waiting: FIFO per model, no barging, honest fail-fast retry-after."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.policy.waitqueue import (
    Admit,
    Reject,
    Waiter,
    WaitQueue,
    WaitUntil,
    decide,
    dequeue,
    enqueue,
    expected_start,
    head,
    position,
)


def queue(*ws: tuple[int, str, float]) -> WaitQueue:
    q = WaitQueue()
    for i, model, deadline in ws:
        q = enqueue(q, Waiter(id=i, model=model, enqueued_at=float(i), deadline=deadline))
    return q


Q = queue((1, "gpt-image-1", 100), (2, "dall-e-3", 100), (3, "gpt-image-1", 100), (4, "gpt-image-1", 25))


def test_fifo_per_model() -> None:
    assert head(Q, "gpt-image-1") == Q.waiters[0]
    assert head(Q, "dall-e-3") == Q.waiters[1]
    assert [position(Q, i) for i in (1, 2, 3, 4)] == [0, 0, 1, 2]
    assert head(dequeue(Q, 1), "gpt-image-1") == Q.waiters[2]
    assert head(Q, "dall-e-2") is None


@pytest.mark.parametrize(
    ("waiter", "now", "capacity_at", "expected"),
    [
        (1, 10.0, 10.0, Admit()),  # head, capacity now
        (1, 10.0, 5.0, Admit()),
        (1, 10.0, 12.0, WaitUntil(until=12.0)),  # head, capacity soon
        (3, 10.0, 10.0, WaitUntil(until=None)),  # not head: woken when the head leaves
        (2, 10.0, 10.0, Admit()),  # other model is not blocked by gpt-image-1's queue
        (1, 10.0, 130.0, Reject(retry_after_s=120.0, reason="")),
        (4, 10.0, 10.0, Reject(retry_after_s=20.0, reason="")),  # 2 ahead × 10 s > deadline 25
    ],
)
def test_decide(waiter: int, now: float, capacity_at: float, expected: Admit | WaitUntil | Reject) -> None:
    got = decide(Q, waiter, now, capacity_at, interval_s=10.0)
    if isinstance(expected, Reject):
        assert isinstance(got, Reject)
        assert got.retry_after_s == expected.retry_after_s
        assert "after the request's deadline" in got.reason
    else:
        assert got == expected


def test_duplicate_and_unknown_waiters() -> None:
    with pytest.raises(ValueError, match="already queued"):
        enqueue(Q, Waiter(id=1, model="x", enqueued_at=0, deadline=1))
    with pytest.raises(KeyError):
        decide(Q, 99, 0.0, 0.0, 1.0)


@given(st.floats(0, 100), st.floats(0, 200), st.integers(0, 20), st.floats(0, 30))
def test_expected_start_is_never_before_now_or_capacity(
    now: float, capacity_at: float, ahead: int, interval: float
) -> None:
    start = expected_start(now, capacity_at, ahead, interval)
    assert start >= now and start >= capacity_at
    assert start >= expected_start(now, capacity_at, max(0, ahead - 1), interval)


@given(st.lists(st.sampled_from(["m1", "m2", "m3"]), max_size=20), st.floats(0, 50))
def test_only_the_head_of_each_model_is_ever_admitted(models: list[str], now: float) -> None:
    q = WaitQueue()
    for i, m in enumerate(models):
        q = enqueue(q, Waiter(id=i, model=m, enqueued_at=float(i), deadline=1e9))
    admitted = {w.id for w in q.waiters if isinstance(decide(q, w.id, now, now, 1.0), Admit)}
    heads = {h.id for m in set(models) if (h := head(q, m)) is not None}
    assert admitted == heads

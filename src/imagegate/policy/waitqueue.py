"""Who waits for capacity, who goes next, and when to give up honestly.

When every deployment of a logical model is out of quota for the moment, a request waits instead
of being sent to a certain 429. The rules:

* **FIFO per logical model.** Only the head of a model's queue may take capacity; a newcomer never
  barges past an older waiter of the same model (it would starve it under sustained load). Models
  queue independently: a gpt-image-1 backlog does not delay dall-e-3.
* **Deadline.** A waiter waits at most until its deadline. If the *expected* start — when capacity
  returns, plus one service interval per waiter ahead of it — is already past the deadline, it
  fails fast now with ``RateLimited`` whose ``retry_after_s`` is that expected start: an honest
  figure the caller can act on, rather than a timeout at the deadline.

The async driver (an event per waiter, woken by the scheduler) lives outside ``policy``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Admit",
    "Reject",
    "WaitQueue",
    "WaitUntil",
    "Waiter",
    "decide",
    "dequeue",
    "enqueue",
    "expected_start",
    "head",
    "position",
]


@dataclass(frozen=True, slots=True)
class Waiter:
    id: int
    model: str
    enqueued_at: float
    deadline: float


@dataclass(frozen=True, slots=True)
class WaitQueue:
    """All waiters in arrival order; per-model FIFO is the subsequence with that model."""

    waiters: tuple[Waiter, ...] = ()


@dataclass(frozen=True, slots=True)
class Admit:
    """Capacity is expected now and this waiter is at the head: try to acquire."""


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Keep waiting; re-check at ``until`` or when woken (None: only when woken)."""

    until: float | None


@dataclass(frozen=True, slots=True)
class Reject:
    """Cannot be served by the deadline. ``retry_after_s`` is the honest estimate from now."""

    retry_after_s: float
    reason: str


def enqueue(q: WaitQueue, w: Waiter) -> WaitQueue:
    if any(x.id == w.id for x in q.waiters):
        raise ValueError(f"waiter {w.id} is already queued")
    return WaitQueue((*q.waiters, w))


def dequeue(q: WaitQueue, waiter_id: int) -> WaitQueue:
    """Remove a waiter (served, rejected or cancelled). Unknown ids are ignored."""
    return WaitQueue(tuple(w for w in q.waiters if w.id != waiter_id))


def head(q: WaitQueue, model: str) -> Waiter | None:
    return next((w for w in q.waiters if w.model == model), None)


def position(q: WaitQueue, waiter_id: int) -> int:
    """How many waiters of the same model are ahead (0 = head)."""
    target = next((w for w in q.waiters if w.id == waiter_id), None)
    if target is None:
        raise KeyError(waiter_id)
    ahead = 0
    for w in q.waiters:
        if w.id == waiter_id:
            return ahead
        if w.model == target.model:
            ahead += 1
    raise AssertionError("unreachable")  # pragma: no cover


def expected_start(now: float, capacity_at: float, ahead: int, interval_s: float) -> float:
    """When a waiter with ``ahead`` others in front can expect to start.

    ``capacity_at`` is when the next slot opens on any deployment in its plan (in the past: now);
    each waiter ahead consumes one slot, and slots recur on aggregate every ``interval_s`` seconds
    (60 / the group's effective total RPM). For a concurrency-bound wait the driver passes its
    best estimate (e.g. now + the expected remaining latency of the oldest in-flight request).
    """
    return max(now, capacity_at) + ahead * max(0.0, interval_s)


def decide(
    q: WaitQueue, waiter_id: int, now: float, capacity_at: float, interval_s: float
) -> Admit | WaitUntil | Reject:
    """Next step for one waiter: admit (head and capacity is here), wait, or reject honestly."""
    w = next((x for x in q.waiters if x.id == waiter_id), None)
    if w is None:
        raise KeyError(waiter_id)
    ahead = position(q, waiter_id)
    start = expected_start(now, capacity_at, ahead, interval_s)
    if start > w.deadline:
        return Reject(
            retry_after_s=start - now,
            reason=f"capacity for {w.model} expected in {start - now:.1f}s "
            f"({ahead} waiting ahead), after the request's deadline",
        )
    if ahead == 0:
        return Admit() if capacity_at <= now else WaitUntil(until=capacity_at)
    return WaitUntil(until=None)  # woken when the one ahead is served or leaves

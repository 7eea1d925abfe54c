"""IdempotencyStore contract (atomic claim on every backend) and the waiting IdempotencyGate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagegate.errors import Conflict, InvalidRequest
from imagegate.ports import ClaimStatus
from imagegate.stores.idempotency import IdempotencyGate, request_fingerprint

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FP = request_fingerprint("POST", "/v1/images/generations", [b'{"prompt":"a red fox"}'])
OTHER = request_fingerprint("POST", "/v1/images/generations", [b'{"prompt":"a blue fox"}'])


class FakeClock:
    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


async def test_claim_in_progress_done(idempotency_store: Any) -> None:
    s = idempotency_store
    first = await s.claim("key_a", "k1", FP, T0, lease_s=60)
    assert first.status is ClaimStatus.CLAIMED
    assert (await s.claim("key_a", "k1", FP, T0, lease_s=60)).status is ClaimStatus.IN_PROGRESS
    assert (await s.claim("key_b", "k1", FP, T0, lease_s=60)).status is ClaimStatus.CLAIMED  # other key id
    await s.complete("key_a", "k1", "resp:abc", T0, ttl_s=3600)
    done = await s.claim("key_a", "k1", FP, T0 + timedelta(minutes=59), lease_s=60)
    assert done.status is ClaimStatus.DONE and done.record.response_ref == "resp:abc"


async def test_other_body_is_conflict(idempotency_store: Any) -> None:
    await idempotency_store.claim("key_a", "k1", FP, T0, lease_s=60)
    with pytest.raises(Conflict, match="different request body") as info:
        await idempotency_store.claim("key_a", "k1", OTHER, T0, lease_s=60)
    assert info.value.http_status == 409


async def test_expired_entries_are_taken_over(idempotency_store: Any) -> None:
    s = idempotency_store
    await s.claim("key_a", "k1", FP, T0, lease_s=60)  # owner dies, never completes
    assert (
        await s.claim("key_a", "k1", FP, T0 + timedelta(seconds=59), lease_s=60)
    ).status is ClaimStatus.IN_PROGRESS
    assert (
        await s.claim("key_a", "k1", FP, T0 + timedelta(seconds=60), lease_s=60)
    ).status is ClaimStatus.CLAIMED
    await s.complete("key_a", "k1", "r", T0 + timedelta(seconds=61), ttl_s=10)
    later = await s.claim(
        "key_a", "k1", OTHER, T0 + timedelta(seconds=71), lease_s=60
    )  # TTL over: a new request
    assert later.status is ClaimStatus.CLAIMED and later.record.fingerprint == OTHER


async def test_release_and_purge(idempotency_store: Any) -> None:
    s = idempotency_store
    await s.claim("key_a", "k1", FP, T0, lease_s=60)
    await s.release("key_a", "k1")
    assert await s.get("key_a", "k1") is None
    await s.claim("key_a", "k2", FP, T0, lease_s=60)
    await s.complete("key_a", "k2", "r", T0, ttl_s=10)
    await s.release("key_a", "k2")  # release never drops a finished response
    assert (await s.get("key_a", "k2")).state == "done"  # type: ignore[union-attr]
    await s.claim("key_a", "k3", FP, T0, lease_s=1000)
    assert await s.purge_expired(T0 + timedelta(seconds=10)) == 1
    assert await s.get("key_a", "k2") is None and await s.get("key_a", "k3") is not None


async def test_concurrent_claims_have_exactly_one_winner(idempotency_store: Any) -> None:
    claims = await asyncio.gather(
        *(idempotency_store.claim("key_a", "race", FP, T0, lease_s=60) for _ in range(20))
    )
    assert [c.status for c in claims].count(ClaimStatus.CLAIMED) == 1
    assert [c.status for c in claims].count(ClaimStatus.IN_PROGRESS) == 19


async def test_bad_idempotency_key_names_the_header(idempotency_store: Any) -> None:
    with pytest.raises(InvalidRequest, match="Idempotency-Key"):
        await idempotency_store.claim("key_a", "x" * 300, FP, T0, lease_s=60)


async def test_waiter_in_same_process_is_woken_and_replays(idempotency_store: Any) -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def no_poll(_: float) -> None:
        await never.wait()  # polling never fires: only the in-process wake-up can end the wait

    gate = IdempotencyGate(idempotency_store, clock=clock, sleep=no_poll)
    generations = 0
    go = asyncio.Event()

    async def handle() -> str:
        nonlocal generations
        ticket = await gate.begin("key_a", "k1", FP)
        if not ticket.owner:
            assert ticket.replay is not None and ticket.replay.response_ref is not None
            return ticket.replay.response_ref
        generations += 1
        await go.wait()
        await gate.complete(ticket, "resp:1")
        return "resp:1"

    tasks = [asyncio.ensure_future(handle()) for _ in range(5)]
    for _ in range(50):
        await asyncio.sleep(0)
    go.set()
    assert await asyncio.gather(*tasks) == ["resp:1"] * 5
    assert generations == 1


async def test_waiter_on_another_replica_polls_then_replays(idempotency_store: Any) -> None:
    clock = FakeClock()
    go = asyncio.Event()
    polls = 0

    async def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            go.set()
        await clock.sleep(seconds)

    replica_a = IdempotencyGate(idempotency_store, clock=clock, sleep=sleep, poll_interval_s=0.5)
    replica_b = IdempotencyGate(idempotency_store, clock=clock, sleep=sleep, poll_interval_s=0.5)
    owner = await replica_a.begin("key_a", "k1", FP)
    assert owner.owner

    async def finish() -> None:
        await go.wait()
        await replica_a.complete(owner, "resp:7")

    finisher = asyncio.ensure_future(finish())
    ticket = await replica_b.begin("key_a", "k1", FP)
    await finisher
    assert not ticket.owner and ticket.replay is not None and ticket.replay.response_ref == "resp:7"
    assert polls >= 3 and set(clock.sleeps) == {0.5}


async def test_waiting_too_long_is_a_conflict_to_retry(idempotency_store: Any) -> None:
    clock = FakeClock()
    gate = IdempotencyGate(
        idempotency_store, clock=clock, sleep=clock.sleep, poll_interval_s=1, wait_timeout_s=5
    )
    assert (await gate.begin("key_a", "k1", FP)).owner
    other = IdempotencyGate(
        idempotency_store, clock=clock, sleep=clock.sleep, poll_interval_s=1, wait_timeout_s=5
    )
    with pytest.raises(Conflict, match="still in progress"):
        await other.begin("key_a", "k1", FP)
    assert clock.sleeps == [1, 1, 1, 1, 1]


async def test_released_claim_lets_a_waiter_run(idempotency_store: Any) -> None:
    clock = FakeClock()
    gate = IdempotencyGate(idempotency_store, clock=clock, sleep=clock.sleep)
    first = await gate.begin("key_a", "k1", FP)
    waiter = asyncio.ensure_future(gate.begin("key_a", "k1", FP))
    await asyncio.sleep(0)
    await gate.release(first)
    second = await waiter
    assert second.owner  # the first failed: the retry runs (and is billed) once


async def test_different_body_does_not_wait(idempotency_store: Any) -> None:
    clock = FakeClock()
    gate = IdempotencyGate(idempotency_store, clock=clock, sleep=clock.sleep)
    await gate.begin("key_a", "k1", FP)
    with pytest.raises(Conflict, match="different request body"):
        await gate.begin("key_a", "k1", OTHER)
    assert clock.sleeps == []


def test_fingerprint_separates_parts() -> None:
    assert request_fingerprint("POST", "/p", [b"ab", b"c"]) != request_fingerprint(
        "POST", "/p", [b"a", b"bc"]
    )
    assert request_fingerprint("post", "/p", [b"x"]) == request_fingerprint("POST", "/p", [b"x"])

"""What sharing routing state through Redis costs per state update, and what it buys.

Runs the quota policy through ``StateStore.update`` (what ``Scheduler.acquire`` does per attempt)
against ``InMemoryStateStore`` (the baseline) and ``RedisStateStore`` at 127.0.0.1:6379, with 1 and
4 "replicas" (independent clients) each with 8 coroutines updating one deployment's key at once
(and one replica updating serially: the bare round trips). Prints updates/s,
median and p95 latency per update, the ratio to memory, and the quota grants all replicas made in
one window against the allowance (memory: each replica grants a full window).

``.venv/bin/python bench/bench_redis_state.py [--updates 2000]``
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import time

from redis.asyncio import Redis

from imagegate.policy import quota
from imagegate.routing.redis_state import RedisStateStore
from imagegate.routing.state import DeploymentState, InMemoryStateStore, StateStore

URL = "redis://127.0.0.1:6379/0"
NOW = 1_700_000_000.0


def touch(st: DeploymentState) -> tuple[None, DeploymentState]:
    n = 0 if st.reported_remaining is None else st.reported_remaining[0]
    return None, DeploymentState(quota=st.quota, breaker=st.breaker, reported_remaining=(n + 1, NOW))


async def timed(stores: list[StateStore], updates: int, concurrency: int) -> tuple[float, list[float]]:
    lat: list[float] = []

    async def worker(store: StateStore, n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            await store.update("d", touch)
            lat.append(time.perf_counter() - t0)

    per = updates // (len(stores) * concurrency)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(s, per) for s in stores for _ in range(concurrency)))
    return time.perf_counter() - t0, lat


async def grants(stores: list[StateStore]) -> int:
    cfg = quota.QuotaConfig(rpm=600, window_s=10.0)  # 100 per window

    def take(st: DeploymentState) -> tuple[bool, DeploymentState]:
        d, q = quota.try_acquire(cfg, st.quota, NOW)
        return isinstance(d, quota.Granted), DeploymentState(quota=q)

    got = await asyncio.gather(*(s.update("g", take) for s in stores for _ in range(150)))
    return sum(got)


async def main(updates: int) -> None:
    rows = []
    base = None
    cases = (
        ("memory, 1 process", 0, 8),
        ("redis, 1 repl, serial", 1, 1),
        ("redis, 1 replica", 1, 8),
        ("redis, 4 replicas", 4, 8),
    )
    for label, replicas, concurrency in cases:
        prefix = f"ig-bench-{secrets.token_hex(3)}"
        stores: list[StateStore]
        if replicas == 0:
            stores = [InMemoryStateStore()]
        else:
            stores = [RedisStateStore.from_url(URL, prefix=prefix, ttl_s=60) for _ in range(replicas)]
        elapsed, lat = await timed(stores, updates, concurrency)
        ops = len(lat) / elapsed
        granted = await grants([InMemoryStateStore() for _ in range(4)] if replicas == 0 else stores)
        base = base or ops
        rows.append((label, ops, statistics.median(lat), statistics.quantiles(lat, n=20)[-1], granted))
        for s in stores:
            if isinstance(s, RedisStateStore):
                await s.aclose()
        client = Redis.from_url(URL)
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
        await client.aclose()
    head = ("store", "updates/s", "p50 ms", "p95 ms", "vs memory", "grants/window (allow 100)")
    print(f"{head[0]:<20} {head[1]:>10} {head[2]:>8} {head[3]:>8} {head[4]:>10} {head[5]:>26}")
    for label, ops, p50, p95, granted in rows:
        print(
            f"{label:<20} {ops:>10.0f} {p50 * 1e3:>8.3f} {p95 * 1e3:>8.3f} {ops / base:>10.4f} {granted:>26}"
        )
    print("(memory's grants row: 4 processes with their own memory store, 150 requests each)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=2000)
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1.0).close()
    except OSError:
        print("Redis is not reachable at 127.0.0.1:6379; nothing measured")
        raise SystemExit(0) from None
    asyncio.run(main(ap.parse_args().updates))

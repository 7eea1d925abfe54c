"""The StateStore contract, run against the in-process store and the Redis store, plus what only
shared state gives: two replicas (two RedisStateStore clients) together never exceed one
deployment's quota window, and a breaker one opens the other sees.

Redis runs at 127.0.0.1:6379; each test uses its own key prefix and deletes it afterwards. When
Redis is absent the Redis cases skip with a message, unless ``IMAGEGATE_REQUIRE_SERVICES=1`` (CI),
where they fail (as in tests/stores/conftest.py).
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from types import MappingProxyType

import orjson
import pytest
import redis as sync_redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from imagegate.config import ApiKeyAuth, DeploymentConfig, Secret
from imagegate.config_load import load
from imagegate.errors import ConfigError, RateLimited, StorageError
from imagegate.policy import breaker, quota
from imagegate.policy.breaker import BreakerState
from imagegate.policy.health import HealthState, ProbeResult
from imagegate.policy.latency import LatencyEstimate
from imagegate.policy.quota import QuotaState
from imagegate.routing import Scheduler
from imagegate.routing.redis_state import (
    CODEC_VERSION,
    RedisStateStore,
    decode_state,
    encode_state,
    redacted_url,
)
from imagegate.routing.state import DeploymentState, InMemoryStateStore, StateStore

REDIS_URL = "redis://127.0.0.1:6379/0"
NOW = 1_700_000_000.0  # a wall-clock-like time, as shared state uses


def require_redis() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1.0):
            return
    except OSError:
        message = "Redis is not reachable at 127.0.0.1:6379"
        if os.environ.get("IMAGEGATE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message} and IMAGEGATE_REQUIRE_SERVICES=1")
        pytest.skip(f"{message}; start it to run these tests (CI requires it)")


async def _drop(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"ig-test-{secrets.token_hex(4)}"
    yield p
    if socket.socket().connect_ex(("127.0.0.1", 6379)) == 0:
        await _drop(p)


MakeStore = Callable[[], Awaitable[StateStore]]


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[MakeStore]:
    """Stores that share state: for redis each call is a new client ("replica") on one prefix;
    for memory each call returns the same process-local store."""
    made: list[RedisStateStore] = []
    if request.param == "redis":
        require_redis()

        async def make() -> StateStore:
            made.append(RedisStateStore.from_url(REDIS_URL, prefix=prefix, ttl_s=60))
            return made[-1]

    else:
        shared = InMemoryStateStore()

        async def make() -> StateStore:
            return shared

    yield make
    for s in made:
        await s.aclose()


# -- contract --------------------------------------------------------------------------------------


async def test_unknown_deployment_reads_as_fresh_state(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.read("nope") == DeploymentState()


async def test_update_stores_new_state_and_returns_value(make_store: MakeStore) -> None:
    store = await make_store()
    opened = breaker.record(
        breaker.BreakerConfig(), BreakerState(), breaker.Outcome(ok=False, status=503, retry_after_s=30), NOW
    )

    def step(st: DeploymentState) -> tuple[str, DeploymentState]:
        return "done", DeploymentState(breaker=opened, quota=st.quota, latency=st.latency, health=st.health)

    assert await store.update("d1", step) == "done"
    assert (await store.read("d1")).breaker == opened
    assert await store.read("d2") == DeploymentState()


async def test_fn_exception_leaves_state_untouched(make_store: MakeStore) -> None:
    store = await make_store()
    await store.update("d", lambda st: (None, DeploymentState(reported_remaining=(3, NOW))))

    def boom(st: DeploymentState) -> tuple[None, DeploymentState]:
        raise ValueError("policy bug")

    with pytest.raises(ValueError, match="policy bug"):
        await store.update("d", boom)
    assert (await store.read("d")).reported_remaining == (3, NOW)
    # and the store is still usable afterwards
    assert await store.update("d", lambda st: (st.reported_remaining, st)) == (3, NOW)


async def test_concurrent_increments_are_not_lost(make_store: MakeStore) -> None:
    stores = [await make_store() for _ in range(3)]

    def incr(st: DeploymentState) -> tuple[int, DeploymentState]:
        n = 0 if st.reported_remaining is None else st.reported_remaining[0]
        return n + 1, DeploymentState(reported_remaining=(n + 1, NOW))

    results = await asyncio.gather(*(stores[i % 3].update("ctr", incr) for i in range(60)))
    assert sorted(results) == list(range(1, 61))
    assert (await stores[0].read("ctr")).reported_remaining == (60, NOW)


async def test_replicas_never_grant_more_than_the_window_allows(make_store: MakeStore) -> None:
    """20 requests from each of two replicas at one instant; 60 RPM over 10 s windows allows 10."""
    a, b = await make_store(), await make_store()
    cfg = quota.QuotaConfig(rpm=60, window_s=10.0)
    allowed = quota.allowance(cfg, 60)

    def take(st: DeploymentState) -> tuple[bool, DeploymentState]:
        decision, q = quota.try_acquire(cfg, st.quota, NOW)
        return isinstance(decision, quota.Granted), DeploymentState(quota=q)

    granted = await asyncio.gather(*(s.update("dep", take) for s in (a, b) for _ in range(20)))
    assert allowed == 10
    assert sum(granted) == allowed
    assert len((await b.read("dep")).quota.grants) == allowed


async def test_a_dead_replicas_concurrency_slot_expires(make_store: MakeStore) -> None:
    """Replica A takes the deployment's only concurrency slot and dies without releasing it:
    replica B is refused until the lease expires (deadline + 30 s grace), then gets the slot."""
    a, b = await make_store(), await make_store()
    cfg = quota.QuotaConfig(rpm=600, window_s=1.0, max_concurrent=1)

    def take(lease_id: str, now: float) -> Callable[[DeploymentState], tuple[bool, DeploymentState]]:
        def step(st: DeploymentState) -> tuple[bool, DeploymentState]:
            decision, q = quota.try_acquire(cfg, st.quota, now, lease_id=lease_id, deadline=NOW + 60)
            return isinstance(decision, quota.Granted), DeploymentState(quota=q)

        return step

    assert await a.update("dep", take("from-a", NOW))
    assert not await b.update("dep", take("from-b", NOW + 89))
    assert await b.update("dep", take("from-b", NOW + 90))
    assert [lease_id for lease_id, _ in (await a.read("dep")).quota.leases] == ["from-b"]


async def test_per_process_stores_each_grant_a_full_window() -> None:
    """The problem shared state solves: two replicas with their own memory store send 2× quota."""
    cfg = quota.QuotaConfig(rpm=60, window_s=10.0)

    def take(st: DeploymentState) -> tuple[bool, DeploymentState]:
        decision, q = quota.try_acquire(cfg, st.quota, NOW)
        return isinstance(decision, quota.Granted), DeploymentState(quota=q)

    a, b = InMemoryStateStore(), InMemoryStateStore()
    granted = await asyncio.gather(*(s.update("dep", take) for s in (a, b) for _ in range(20)))
    assert sum(granted) == 2 * quota.allowance(cfg, 60)


# -- Redis only ------------------------------------------------------------------------------------


def dep(name: str) -> DeploymentConfig:
    return DeploymentConfig(
        name=name,
        endpoint="http://azure.invalid",
        model="gpt-image-1",
        auth=ApiKeyAuth(key=Secret("k")),
        rpm=60,
    )


@pytest.fixture
async def replicas(prefix: str) -> AsyncIterator[tuple[RedisStateStore, RedisStateStore]]:
    require_redis()
    a = RedisStateStore.from_url(REDIS_URL, prefix=prefix, ttl_s=60)
    b = RedisStateStore.from_url(REDIS_URL, prefix=prefix, ttl_s=60)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_two_schedulers_share_one_quota(replicas: tuple[RedisStateStore, RedisStateStore]) -> None:
    """Two gateway replicas' schedulers, one deployment at 60 RPM / 10 s: 10 leases in total."""

    async def no_sleep(_: float) -> None:
        return None

    scheds = [Scheduler([dep("d")], store=s, clock=lambda: NOW, sleep=no_sleep) for s in replicas]

    async def replica(s: Scheduler) -> int:
        """15 requests one after another (a replica's own queue is FIFO); the replicas run at once."""
        got = 0
        for _ in range(15):
            try:
                await s.acquire("gpt-image-1", ["d"], deadline=NOW)
                got += 1
            except RateLimited:
                pass
        return got

    leases = await asyncio.gather(*(replica(s) for s in scheds))
    assert sum(leases) == 10


async def test_breaker_opened_on_one_replica_is_open_on_the_other(
    replicas: tuple[RedisStateStore, RedisStateStore],
) -> None:
    a, b = replicas
    cfg = breaker.BreakerConfig()

    def fail(st: DeploymentState) -> tuple[None, DeploymentState]:
        o = breaker.Outcome(ok=False, status=503, retry_after_s=20.0)
        return None, DeploymentState(breaker=breaker.record(cfg, st.breaker, o, NOW))

    await a.update("d", fail)
    seen = (await b.read("d")).breaker
    assert breaker.status_at(cfg, seen, NOW + 1) == "open"
    assert breaker.status_at(cfg, seen, NOW + 20) == "half_open"

    async def no_sleep(_: float) -> None:
        return None

    sched_b = Scheduler([dep("d")], store=b, clock=lambda: NOW + 1, sleep=no_sleep)
    with pytest.raises(RateLimited, match="breaker open"):
        await sched_b.acquire("gpt-image-1", ["d"], deadline=NOW + 1)


async def test_writes_set_a_ttl(prefix: str, replicas: tuple[RedisStateStore, RedisStateStore]) -> None:
    a, _ = replicas
    await a.update("d", lambda st: (None, st))
    client = Redis.from_url(REDIS_URL)
    ttl_ms = await client.pttl(f"{prefix}:d")
    await client.aclose()
    assert 0 < ttl_ms <= 60_000


async def test_endless_contention_gives_up_with_storage_error(prefix: str) -> None:
    require_redis()
    store = RedisStateStore.from_url(REDIS_URL, prefix=prefix, max_retries=3)
    other = sync_redis.Redis.from_url(REDIS_URL)
    calls = 0

    def contended(st: DeploymentState) -> tuple[None, DeploymentState]:
        nonlocal calls
        calls += 1
        other.set(f"{prefix}:d", encode_state(DeploymentState(reported_remaining=(calls, NOW))))
        return None, st

    try:
        with pytest.raises(StorageError, match=r"3 optimistic updates"):
            await store.update("d", contended)
    finally:
        other.close()
        await store.aclose()
    assert calls == 3


def test_a_redis_url_in_logs_never_shows_its_password() -> None:
    assert redacted_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted_url("rediss://user:p%40ss@h:6380/2?ssl_cert_reqs=none") == "rediss://user:***@h:6380/2"
    assert redacted_url("redis://maybe-a-password@h/0") == "redis://***@h/0"
    assert redacted_url("redis://h:6379") == "redis://h:6379"
    assert redacted_url("unix://:pw@/run/redis.sock?db=1") == "unix://:***@/run/redis.sock"


async def test_unavailable_redis_is_a_storage_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(StorageError, match="unavailable"):
        await store.read("d")
    with pytest.raises(StorageError, match="unavailable"):
        await store.update("d", lambda st: (None, st))
    await store.aclose()


# -- codec -----------------------------------------------------------------------------------------

times = st.floats(allow_nan=False)  # includes ±inf, which the policies use for "never"
opt_times = st.none() | times
ints = st.integers(min_value=0, max_value=2**53)
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)

states = st.builds(
    DeploymentState,
    breaker=st.builds(
        BreakerState,
        status=st.sampled_from(["closed", "open", "half_open"]),
        buckets=st.lists(st.tuples(st.integers(-(2**40), 2**40), ints, ints), max_size=4).map(tuple),
        opened_at=opt_times,
        reopen_at=opt_times,
        trips=ints,
        probe_started_at=opt_times,
        reason=text,
        throttled=st.booleans(),
        streak=ints,
        last_failure_at=opt_times,
    ),
    quota=st.builds(
        QuotaState,
        grants=st.lists(times, max_size=5).map(tuple),
        leases=st.lists(st.tuples(text, times), max_size=4).map(tuple),
        effective_rpm=opt_times,
        blocked_until=times,
        block_reason=text,
        last_decrease_at=times,
        last_change_at=times,
    ),
    latency=st.dictionaries(
        text,
        st.builds(LatencyEstimate, mean_s=times, var_s2=times, samples=ints, updated_at=times),
        max_size=3,
    ).map(MappingProxyType),
    health=st.builds(
        HealthState,
        last_probe_at=times,
        last_traffic_at=times,
        last_result=st.none()
        | st.builds(
            ProbeResult,
            verdict=st.sampled_from(["healthy", "unhealthy", "throttled"]),
            reason=text,
            status=st.none() | st.integers(100, 599),
        ),
    ),
    reported_remaining=st.none() | st.tuples(ints, times),
)


@settings(max_examples=200, deadline=None)
@given(states)
def test_codec_round_trips_every_state(state: DeploymentState) -> None:
    assert decode_state(encode_state(state)) == state


def test_codec_keeps_minus_infinity_and_defaults() -> None:
    raw = encode_state(DeploymentState())
    data = orjson.loads(raw)
    assert data["v"] == CODEC_VERSION
    assert data["health"]["last_probe_at"] == "-inf"
    back = decode_state(raw)
    assert back == DeploymentState() and back.health.last_probe_at == -math.inf


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"not json", "unreadable routing state"),
        (orjson.dumps({"v": 99}), "codec version 99"),
        (orjson.dumps({"nothing": 1}), "codec version None"),
        (orjson.dumps({**orjson.loads(encode_state(DeploymentState())), "breaker": {}}), "unreadable"),
        (
            orjson.dumps({**orjson.loads(encode_state(DeploymentState())), "reported_remaining": ["x", 1.0]}),
            "not an integer",
        ),
        (  # a version-1 state (an in-flight count, no leases) is refused, not misread as free
            orjson.dumps({**orjson.loads(encode_state(DeploymentState())), "v": 1}),
            "codec version 1",
        ),
        (
            orjson.dumps(
                {
                    **(d := orjson.loads(encode_state(DeploymentState()))),
                    "quota": {**d["quota"], "leases": [["a", 1.0, 2.0]]},
                }
            ),
            "unreadable",
        ),
        (
            orjson.dumps(
                {
                    **(d := orjson.loads(encode_state(DeploymentState()))),
                    "quota": {**d["quota"], "leases": [[7, 1.0]]},
                }
            ),
            "not a string",
        ),
    ],
)
def test_codec_rejects_what_it_cannot_read(raw: bytes, match: str) -> None:
    with pytest.raises(StorageError, match=match):
        decode_state(raw, key="ig:d")


# -- configuration ---------------------------------------------------------------------------------


def _config(tmp_path: object, body: str, environ: dict[str, str] | None = None) -> object:
    from pathlib import Path

    path = Path(str(tmp_path)) / "imagegate.yaml"
    path.write_text(body)
    return load(path, environ or {})


def test_memory_is_the_default(tmp_path: object) -> None:
    cfg = load(None, {})
    assert cfg.routing_state.backend == "memory"


def test_redis_backend_reads_url_from_file_or_env(tmp_path: object) -> None:
    from imagegate.config import ImageGateConfig

    cfg = _config(tmp_path, "routing_state: {backend: redis, url: 'redis://h:1/0', prefix: p1, ttl_s: 5}\n")
    assert isinstance(cfg, ImageGateConfig)
    assert (cfg.routing_state.url, cfg.routing_state.prefix, cfg.routing_state.ttl_s) == (
        "redis://h:1/0",
        "p1",
        5.0,
    )
    cfg = _config(tmp_path, "routing_state: {backend: redis}\n", {"IMAGEGATE_REDIS_URL": "redis://:pw@h:2/0"})
    assert isinstance(cfg, ImageGateConfig)
    assert cfg.routing_state.url == "redis://:pw@h:2/0"
    assert "pw" not in repr(cfg.routing_state)


def test_bad_routing_state_settings_are_all_reported(tmp_path: object) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, "routing_state: {backend: redis, url: 'http://:secret@h', ttl_s: -1, extra: 1}\n")
    text_ = str(err.value)
    assert "routing_state.url: 'h' is not a redis://" in text_
    assert "secret" not in text_
    assert "routing_state.ttl_s: -1 is not a positive number" in text_
    assert "routing_state.extra: unknown setting" in text_
    with pytest.raises(ConfigError, match=r"routing_state.backend: 'etcd' is not one of: memory, redis"):
        _config(tmp_path, "routing_state: {backend: etcd}\n")
    with pytest.raises(ConfigError, match=r"routing_state.url: missing"):
        _config(tmp_path, "routing_state: {backend: redis}\n")


async def test_gate_uses_redis_and_wall_clock_when_configured(tmp_path: object, prefix: str) -> None:
    import time

    from imagegate.api import AsyncImageGate

    require_redis()
    cfg = _config(tmp_path, f"routing_state: {{backend: redis, url: '{REDIS_URL}', prefix: {prefix}}}\n")
    async with AsyncImageGate(cfg) as gate:  # type: ignore[arg-type]
        assert gate.scheduler._clock is time.time
        assert isinstance(gate.scheduler._store, RedisStateStore)
        await gate.scheduler._store.update("probe", lambda st: (None, st))
    client = Redis.from_url(REDIS_URL)
    assert await client.exists(f"{prefix}:probe") == 1
    await client.aclose()


async def test_two_gates_against_one_emulator(tmp_path: object, prefix: str) -> None:
    """Two library "replicas" (two AsyncImageGates), one emulated deployment at 60 RPM / 10 s (10
    per window, 4 concurrent), 8 requests each at once with a 9.5 s deadline (enough for the ~8 s
    latency prior, too short to wait for the next window). Shared state: at most 10 go out, the
    rest are shed before sending (429 + retry-after to the caller), and Azure (the emulator) answers no
    429. (With per-process state each gate sends up to its own full quota and the emulator answers
    429s; that run waits out retry-afters for ~11 s, so the contrast is asserted at the policy and
    scheduler level above instead.)"""
    import httpx

    from imagegate.api import AsyncImageGate
    from imagegate.emulator import create_emulator_app

    require_redis()
    app = create_emulator_app(time_scale=0)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator.invalid")
    cfg = _config(tmp_path, f"routing_state: {{backend: redis, url: '{REDIS_URL}', prefix: {prefix}}}\n")
    gates = [AsyncImageGate(cfg, http_client=http) for _ in range(2)]  # type: ignore[arg-type]

    async def one(gate: AsyncImageGate) -> str:
        try:
            await gate.generate("a red fox", model="gpt-image-2", quality="low", deadline_s=9.5)
        except RateLimited:
            return "shed"
        except Exception as exc:  # a 429 from upstream surfaces as some error; name it
            return type(exc).__name__
        return "ok"

    outcomes = await asyncio.gather(*(one(g) for g in gates for _ in range(8)))
    counters = (await http.get("/_emulator/deployments/gpt-image-2")).json()["counters"]
    throttled = counters["requests"]["by_status"].get("429", 0)
    for g in gates:
        await g.aclose()
    await http.aclose()
    ok = outcomes.count("ok")
    assert 1 <= ok <= 10 and ok + outcomes.count("shed") == 16, outcomes
    assert throttled == 0
    assert counters["requests"]["by_status"].get("200", 0) == ok

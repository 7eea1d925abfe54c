"""Per-key rpm via ``limits`` (moving window): in-process, and shared through Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from imagegate.errors import ConfigError, RateLimited
from imagegate.ports import RateLimiter
from imagegate.stores.ratelimit import KeyRateLimiter, rate_limiter_for


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[KeyRateLimiter]:
    if request.param == "memory":
        lim = rate_limiter_for(None)
    else:
        url = request.getfixturevalue("redis_url")
        lim = rate_limiter_for(url, namespace=f"igtest-{secrets.token_hex(4)}")
    yield lim
    if request.param == "redis":
        await lim.reset()
    await lim.aclose()


async def test_rpm_allows_exactly_the_limit(limiter: KeyRateLimiter) -> None:
    assert isinstance(limiter, RateLimiter)
    for _ in range(3):
        await limiter.hit("key_a", 3)
    with pytest.raises(RateLimited) as info:
        await limiter.hit("key_a", 3)
    assert info.value.http_status == 429
    assert info.value.retry_after_s is not None and 0 < info.value.retry_after_s <= 60
    assert "3 requests per minute" in info.value.message
    await limiter.hit("key_b", 3)  # other keys are independent


async def test_concurrent_hits_never_exceed_the_limit(limiter: KeyRateLimiter) -> None:
    async def one() -> bool:
        try:
            await limiter.hit("key_c", 10)
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(40)))
    assert results.count(True) == 10


async def test_two_replicas_share_redis_counts(redis_url: str) -> None:
    ns = f"igtest-{secrets.token_hex(4)}"
    a, b = rate_limiter_for(redis_url, namespace=ns), rate_limiter_for(redis_url, namespace=ns)
    try:
        await a.hit("key_a", 2)
        await b.hit("key_a", 2)
        with pytest.raises(RateLimited):
            await a.hit("key_a", 2)
    finally:
        await a.reset()


def test_bad_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        rate_limiter_for("http://user:pw@host")

"""Per-key requests-per-minute limits, via the ``limits`` package (moving window).

A moving window is exact — at most ``rpm`` requests in *any* 60 s span — where a fixed window
lets a burst of 2×rpm straddle a boundary. ``limits`` already implements it in-process and in
Redis (a Lua script, atomic across replicas), so we wrap it rather than write our own; this
adapter adds only the key naming, the retry-after and the mapping to ``RateLimited``.

``retry_after_s`` comes from the window's reset time (when the oldest hit leaves the window).
``limits`` reads ``time.time()`` itself, so the clock cannot be faked here; tests assert counts,
and only bounds on the retry-after.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from imagegate.errors import ConfigError, RateLimited
from imagegate.stores.failures import maps_storage_errors

__all__ = ["KeyRateLimiter", "rate_limiter_for"]


@maps_storage_errors("the rate-limit store")
class KeyRateLimiter:
    """Implements :class:`imagegate.ports.RateLimiter` over a ``limits`` storage."""

    def __init__(
        self, storage: Storage, *, clock: Callable[[], float] = time.time, namespace: str = "ig"
    ) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._clock = clock
        self._namespace = namespace

    def __repr__(self) -> str:
        return f"KeyRateLimiter({type(self._storage).__name__})"

    async def hit(self, key: str, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be >= 1")
        item = RateLimitItemPerMinute(per_minute)
        if await self._limiter.hit(item, self._namespace, key):
            return
        stats = await self._limiter.get_window_stats(item, self._namespace, key)
        retry_after = max(0.0, stats.reset_time - self._clock())
        raise RateLimited(
            f"rate limit of {per_minute} requests per minute reached for this API key; "
            f"retry in {math.ceil(retry_after)} s",
            retry_after_s=retry_after,
        )

    async def ready(self) -> str | None:
        """``None`` when the storage answers, else why not (``/readyz``)."""
        if await self._storage.check():
            return None
        return f"the rate-limit store ({type(self._storage).__name__}) does not answer"

    async def reset(self) -> None:
        await self._storage.reset()

    async def aclose(self) -> None:
        timer = getattr(self._storage, "timer", None)  # MemoryStorage's expiry task
        if timer is not None:
            timer.cancel()


def rate_limiter_for(redis_url: str | None, *, namespace: str = "ig") -> KeyRateLimiter:
    """In-process limits by default; shared through Redis when ``redis_url`` is configured."""
    if not redis_url:
        return KeyRateLimiter(MemoryStorage(), namespace=namespace)
    if not redis_url.startswith(("redis://", "rediss://")):
        raise ConfigError(
            [f"redis_url: expected redis://host:port/db or rediss://..., got {redis_url.split('@')[-1]!r}"]
        )
    storage = RedisStorage("async+" + redis_url, implementation="redispy", key_prefix=f"{namespace}-limits")
    return KeyRateLimiter(storage, namespace=namespace)

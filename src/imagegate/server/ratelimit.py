"""Per-key requests-per-minute for one gateway process, over the ``limits`` library.

A ``RateLimiter`` port adapter (``imagegate.ports``) built by the composition root when no shared
one (Redis) is configured: a moving one-minute window per key, in process memory, so with several
workers each enforces its own share. ``retry_after_s`` is when the oldest request in the window
leaves it, which is when a retry can succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from imagegate.errors import RateLimited

__all__ = ["MemoryRateLimiter"]


class MemoryRateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._clock = clock

    async def hit(self, key: str, per_minute: int) -> None:
        item = RateLimitItemPerMinute(per_minute)
        if await self._limiter.hit(item, key):
            return
        stats = await self._limiter.get_window_stats(item, key)
        retry_after_s = max(0.0, stats.reset_time - self._clock())
        raise RateLimited(
            f"rate limit of {per_minute} requests per minute reached for this key; "
            f"retry after {retry_after_s:.1f} s",
            retry_after_s=retry_after_s,
        )

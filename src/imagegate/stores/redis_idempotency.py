"""Idempotency keys in Redis, for replicas that share Redis but want the claim off the database.

Each entry is a hash ``{namespace}:idem:{key id}:{Idempotency-Key}``. Claiming, completing and
releasing are Lua scripts, which Redis runs atomically, so of any number of concurrent claims
exactly one wins (the same guarantee the SQL store gets from its unique key). Expiry is decided
against the caller's ``now`` — like every other store, so tests drive it with a fake clock — and
each entry also gets a real Redis TTL a day past its logical expiry, purely as garbage collection.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from imagegate.ports import ClaimStatus, IdempotencyClaim, IdempotencyRecord
from imagegate.stores.failures import maps_storage_errors
from imagegate.stores.sql_idempotency import conflict_error, validate_idem_key

__all__ = ["RedisIdempotencyStore"]

_GC_MARGIN_MS = 24 * 3600 * 1000

_CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'expires_at', 'created_at', 'response_ref')
if cur[1] == false or tonumber(cur[3]) <= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'state', 'in_progress', 'expires_at', ARGV[3],
             'created_at', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'claimed', ARGV[1], 'in_progress', ARGV[3], ARGV[2], ''}
end
return {'existing', cur[1], cur[2], cur[3], cur[4], cur[5] or ''}
"""

_COMPLETE = """
if redis.call('HGET', KEYS[1], 'state') == 'in_progress' then
  redis.call('HSET', KEYS[1], 'state', 'done', 'response_ref', ARGV[1], 'expires_at', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'state') == 'in_progress' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _ts(at: datetime) -> str:
    return repr(at.timestamp())


def _dt(value: str | bytes) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@maps_storage_errors("Redis")
class RedisIdempotencyStore:
    def __init__(self, client: Redis, *, namespace: str = "ig") -> None:
        self._redis = client
        self._ns = namespace
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "ig") -> RedisIdempotencyStore:
        return cls(Redis.from_url(url), namespace=namespace)

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore(namespace={self._ns!r})"

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _key(self, key_id: str, idem_key: str) -> str:
        return f"{self._ns}:idem:{key_id}:{idem_key}"

    async def claim(
        self, key_id: str, idem_key: str, fingerprint: str, now: datetime, *, lease_s: float
    ) -> IdempotencyClaim:
        validate_idem_key(idem_key)
        expires = now.timestamp() + lease_s
        gc_ms = int(lease_s * 1000) + _GC_MARGIN_MS
        reply = await self._claim(
            keys=[self._key(key_id, idem_key)], args=[fingerprint, _ts(now), repr(expires), gc_ms]
        )
        outcome, fp, state, expires_at, created_at, ref = (_s(v) for v in reply)
        record = IdempotencyRecord(
            key_id=key_id,
            idem_key=idem_key,
            fingerprint=fp,
            state=state,
            created_at=_dt(created_at),
            expires_at=_dt(expires_at),
            response_ref=ref or None,
        )
        if outcome == "claimed":
            return IdempotencyClaim(ClaimStatus.CLAIMED, record)
        if fp != fingerprint:
            raise conflict_error(idem_key)
        return IdempotencyClaim(ClaimStatus.DONE if state == "done" else ClaimStatus.IN_PROGRESS, record)

    async def complete(
        self, key_id: str, idem_key: str, response_ref: str, now: datetime, *, ttl_s: float
    ) -> None:
        gc_ms = int(ttl_s * 1000) + _GC_MARGIN_MS
        await self._complete(
            keys=[self._key(key_id, idem_key)], args=[response_ref, repr(now.timestamp() + ttl_s), gc_ms]
        )

    async def release(self, key_id: str, idem_key: str) -> None:
        await self._release(keys=[self._key(key_id, idem_key)])

    async def get(self, key_id: str, idem_key: str) -> IdempotencyRecord | None:
        raw = await self._redis.hgetall(self._key(key_id, idem_key))
        if not raw:
            return None
        h = {_s(k): _s(v) for k, v in raw.items()}
        return IdempotencyRecord(
            key_id=key_id,
            idem_key=idem_key,
            fingerprint=h["fingerprint"],
            state=h["state"],
            created_at=_dt(h["created_at"]),
            expires_at=_dt(h["expires_at"]),
            response_ref=h.get("response_ref") or None,
        )

    async def purge_expired(self, now: datetime) -> int:
        """Delete logically expired entries (Redis TTLs collect the rest eventually)."""
        removed = 0
        async for name in self._redis.scan_iter(match=f"{self._ns}:idem:*", count=500):
            expires = await self._redis.hget(name, "expires_at")
            if expires is not None and float(expires) <= now.timestamp():
                removed += int(await self._redis.delete(name))
        return removed

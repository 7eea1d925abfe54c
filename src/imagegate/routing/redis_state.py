"""Routing state shared through Redis, so replicas and ``--workers N`` share breakers and quota.

With :class:`~imagegate.routing.state.InMemoryStateStore` every process keeps its own breaker and
its own quota log: N replicas each send a deployment's full RPM to Azure (N× the quota, 429
storms), and each rediscovers an outage on its own. APIM has exactly that limitation (its breaker
is per instance, peers.md §APIM). Here one key per deployment (``<prefix>:<name>``) holds the whole
:class:`DeploymentState`, and ``update`` is an optimistic transaction::

    WATCH key; GET key; (value, new) = fn(state); MULTI; SET key new PX ttl; EXEC

retried when another replica wrote the key in between (``WatchError``), at most ``max_retries``
times, then a :class:`~imagegate.errors.StorageError`. ``fn`` is pure (it calls the policies), so
running it again on the fresher state is safe; the value returned is the one whose state was
stored. Within one process, updates of one key are first serialised by an ``asyncio.Lock``:
racing our own coroutines through WATCH only burns round trips (60 concurrent updaters on one key
exhausted 50 retries without it), so optimistic retries happen only between replicas.
A Lua script would save a round trip but would have to re-implement the policies in Lua;
WATCH keeps them in one place, in Python. Every write refreshes a TTL (default one day), so keys of
removed deployments expire; an expired key reads as a fresh ``DeploymentState``.

**Clocks.** The policies compare times stored in the state (grant times, ``reopen_at``) with the
scheduler's ``now``. ``time.monotonic`` is per boot/process and meaningless to another replica, so
a gateway configured with ``routing_state: {backend: redis}`` uses ``time.time`` as its clock
(``AsyncImageGate`` picks it when no clock is injected). Replicas therefore need NTP-synchronised
clocks: a skew of ``s`` seconds shifts one replica's view of another's grants and cool-downs by
``s``, so keep it well below the quota window (1-10 s). A wall-clock step (not a slew) does the
same once; the memory backend keeps ``time.monotonic``, which never steps.

**Limits.** The ``concurrency`` cap is shared too, as leases (``QuotaState.leases``): a replica
that dies mid-request never releases its slots, so each slot expires on its own, shortly after the
request's deadline (``QuotaConfig.lease_grace_s``, or ``max_lease_s`` when no deadline is known),
like the breaker's probe slot (``probe_lease_s``). Until then the dead replica's slots still count:
a crash costs the deployment that much concurrency for at most one request deadline, not for
ever. Expiry compares the replicas' wall clocks, so the clock-skew note above applies. Redis
itself is a dependency of every request once configured: when it is down, routing answers
``StorageError`` (503) rather than silently falling back to per-process state and its N× quota.

**Codec.** JSON (orjson), field by field, with a version number (``CODEC_VERSION``); no pickle,
so a Redis write can never execute code and a state written by another version fails loudly
instead of being misread. JSON has no infinities, and the policies use ``-inf`` as "never"
(``HealthState.last_probe_at``, ``QuotaState.blocked_until``), so non-finite floats are stored as
the strings ``"inf"``, ``"-inf"``, ``"nan"``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from imagegate.errors import StorageError
from imagegate.policy.breaker import BreakerState
from imagegate.policy.health import HealthState, ProbeResult
from imagegate.policy.latency import LatencyEstimate
from imagegate.policy.quota import QuotaState
from imagegate.routing.state import DeploymentState

__all__ = ["CODEC_VERSION", "RedisStateStore", "decode_state", "encode_state", "redacted_url"]

T = TypeVar("T")
CODEC_VERSION = 2  # 2: QuotaState.in_flight (a count) became leases [[id, expires_at], ...]
DEFAULT_PREFIX = "imagegate:routing"
DEFAULT_TTL_S = 86_400.0
DEFAULT_MAX_RETRIES = 50


# -- codec ----------------------------------------------------------------------------------------


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # "inf", "-inf", "nan": float() reads them back


def _opt(x: float | None) -> float | str | None:
    return None if x is None else _num(x)


def _flt(v: Any) -> float:
    if isinstance(v, str):
        if v not in ("inf", "-inf", "nan"):
            raise ValueError(f"{v!r} is not a number")
        return float(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{v!r} is not a number")
    return float(v)


def _oflt(v: Any) -> float | None:
    return None if v is None else _flt(v)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{v!r} is not an integer")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    return v


def _encode(s: DeploymentState) -> dict[str, Any]:
    b, q, h = s.breaker, s.quota, s.health
    r = h.last_result
    return {
        "v": CODEC_VERSION,
        "breaker": {
            "status": b.status,
            "buckets": [list(x) for x in b.buckets],
            "opened_at": _opt(b.opened_at),
            "reopen_at": _opt(b.reopen_at),
            "trips": b.trips,
            "probe_started_at": _opt(b.probe_started_at),
            "reason": b.reason,
            "throttled": b.throttled,
            "streak": b.streak,
            "last_failure_at": _opt(b.last_failure_at),
        },
        "quota": {
            "grants": [_num(g) for g in q.grants],
            "leases": [[lease_id, _num(expires)] for lease_id, expires in q.leases],
            "effective_rpm": _opt(q.effective_rpm),
            "blocked_until": _num(q.blocked_until),
            "block_reason": q.block_reason,
            "last_decrease_at": _num(q.last_decrease_at),
            "last_change_at": _num(q.last_change_at),
        },
        "latency": {
            k: {
                "mean_s": _num(e.mean_s),
                "var_s2": _num(e.var_s2),
                "samples": e.samples,
                "updated_at": _num(e.updated_at),
            }
            for k, e in s.latency.items()
        },
        "health": {
            "last_probe_at": _num(h.last_probe_at),
            "last_traffic_at": _num(h.last_traffic_at),
            "last_result": None
            if r is None
            else {"verdict": r.verdict, "reason": r.reason, "status": r.status},
        },
        "reported_remaining": None
        if s.reported_remaining is None
        else [s.reported_remaining[0], _num(s.reported_remaining[1])],
    }


def _decode(d: Mapping[str, Any]) -> DeploymentState:
    b, q, h = d["breaker"], d["quota"], d["health"]
    status = _str(b["status"])
    if status not in ("closed", "open", "half_open"):
        raise ValueError(f"breaker.status {status!r} is not closed, open or half_open")
    buckets = tuple((_int(i), _int(ok), _int(bad)) for i, ok, bad in b["buckets"])
    r = h["last_result"]
    result = None
    if r is not None:
        verdict = _str(r["verdict"])
        if verdict not in ("healthy", "unhealthy", "throttled"):
            raise ValueError(f"health.last_result.verdict {verdict!r} is unknown")
        result = ProbeResult(
            verdict=cast(Any, verdict),
            reason=_str(r["reason"]),
            status=None if r["status"] is None else _int(r["status"]),
        )
    rr = d["reported_remaining"]
    return DeploymentState(
        breaker=BreakerState(
            status=cast(Any, status),
            buckets=buckets,
            opened_at=_oflt(b["opened_at"]),
            reopen_at=_oflt(b["reopen_at"]),
            trips=_int(b["trips"]),
            probe_started_at=_oflt(b["probe_started_at"]),
            reason=_str(b["reason"]),
            throttled=bool(b["throttled"]),
            streak=_int(b["streak"]),
            last_failure_at=_oflt(b["last_failure_at"]),
        ),
        quota=QuotaState(
            grants=tuple(_flt(g) for g in q["grants"]),
            leases=tuple((_str(lease_id), _flt(expires)) for lease_id, expires in q["leases"]),
            effective_rpm=_oflt(q["effective_rpm"]),
            blocked_until=_flt(q["blocked_until"]),
            block_reason=_str(q["block_reason"]),
            last_decrease_at=_flt(q["last_decrease_at"]),
            last_change_at=_flt(q["last_change_at"]),
        ),
        latency=MappingProxyType(
            {
                _str(k): LatencyEstimate(
                    mean_s=_flt(e["mean_s"]),
                    var_s2=_flt(e["var_s2"]),
                    samples=_int(e["samples"]),
                    updated_at=_flt(e["updated_at"]),
                )
                for k, e in d["latency"].items()
            }
        ),
        health=HealthState(
            last_probe_at=_flt(h["last_probe_at"]),
            last_traffic_at=_flt(h["last_traffic_at"]),
            last_result=result,
        ),
        reported_remaining=None if rr is None else (_int(rr[0]), _flt(rr[1])),
    )


def encode_state(state: DeploymentState) -> bytes:
    return orjson.dumps(_encode(state))


def decode_state(raw: bytes | str | None, *, key: str = "routing state") -> DeploymentState:
    """``None`` (no key, or it expired) is a fresh state; anything unreadable is a StorageError."""
    if raw is None:
        return DeploymentState()
    try:
        data = orjson.loads(raw)
        version = data.get("v") if isinstance(data, dict) else None
        if version != CODEC_VERSION:
            raise StorageError(
                f"{key}: stored with codec version {version!r}, this gateway reads version {CODEC_VERSION}; "
                "run one version per prefix (or change routing_state.prefix)"
            )
        return _decode(data)
    except StorageError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StorageError(f"{key}: unreadable routing state ({type(exc).__name__}: {exc})") from exc


# -- store ----------------------------------------------------------------------------------------


class RedisStateStore:
    """``StateStore`` over Redis: one JSON value per deployment, optimistic WATCH/MULTI updates."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl_s: float = DEFAULT_TTL_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        where: str = "Redis",
    ) -> None:
        if not prefix:
            raise ValueError("prefix must be a non-empty string")
        if not ttl_s > 0 or max_retries < 1:
            raise ValueError(f"ttl_s={ttl_s!r} must be > 0 and max_retries={max_retries!r} ≥ 1")
        self._redis = client
        self._prefix = prefix
        self._ttl_ms = max(1, math.ceil(ttl_s * 1000))
        self._max_retries = max_retries
        self._locks: dict[str, asyncio.Lock] = {}
        self._where = where  # for operators' logs: never the password

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStateStore:
        return cls(Redis.from_url(url), where=f"Redis at {redacted_url(url)}", **kwargs)

    def __repr__(self) -> str:  # the client's URL may carry a password
        return f"RedisStateStore(prefix={self._prefix!r})"

    def key(self, name: str) -> str:
        return f"{self._prefix}:{name}"

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def read(self, name: str) -> DeploymentState:
        key = self.key(name)
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return decode_state(raw, key=key)

    async def update(self, name: str, fn: Callable[[DeploymentState], tuple[T, DeploymentState]]) -> T:
        key = self.key(name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            return await self._update(key, fn)

    async def _update(self, key: str, fn: Callable[[DeploymentState], tuple[T, DeploymentState]]) -> T:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(self._max_retries):
                    try:
                        await pipe.watch(key)
                        value, new = fn(decode_state(await pipe.get(key), key=key))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(key, encode_state(new), px=self._ttl_ms)
                        await pipe.execute()
                        return value
                    except WatchError:
                        continue  # another replica wrote the key between our GET and EXEC
                    finally:
                        await pipe.reset()  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        raise StorageError(
            f"routing state {key}: {self._max_retries} optimistic updates in a row lost to concurrent "
            "writers; too much contention on one deployment's state, retry later"
        )

    def _unavailable(self, exc: BaseException) -> StorageError:
        lines = str(exc).strip().splitlines()
        said = f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
        return StorageError(
            f"Redis (routing state) is unavailable or refused the operation ({type(exc).__name__})",
            detail=f"{self._where} (routing state): {said}",
        )


def redacted_url(url: str) -> str:
    """A Redis URL as logs may show it: the password (and a user name given alone, which may be
    one) replaced by ``***``, the query dropped."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        host = f"{user}:***@{host}" if colon else f"***@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))

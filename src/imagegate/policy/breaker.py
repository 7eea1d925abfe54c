"""Per-deployment circuit breaker, as pure state transitions.

Why a real breaker and not LiteLLM's timed "cooldown": a cooldown re-admits *all* traffic when it
expires, so a still-broken deployment eats a burst of requests (and their latency) before it is
excluded again. Here an expired cool-down admits exactly **one probe** (half-open); only its
success closes the breaker. And unlike LiteLLM (#7669, #20722) a ``retry-after`` on a 429/503 is
honoured every time it is seen: the breaker stays open at least that long.

States and transitions (``now`` is always passed in; nothing here reads a clock)::

    closed ──(failure rate ≥ threshold over window, ≥ min_requests)──────► open
    closed ──(consecutive_failures in a row, 429s aside)─────────────────► open
    closed ──(429/503 carrying retry-after)──────────────────────────────► open
    open   ──(now ≥ reopen_at: cool-down and retry-after both elapsed)───► half-open (lazily)
    half-open ──acquire()──► probe claimed (one at a time; a lost probe's lease expires)
    probe ──success──► closed          probe ──failure──► open, cool-down × backoff_factor

``reopen_at = max(now + cool-down, now + retry-after)``, where the cool-down grows
``cooldown_s · backoff_factor**(trips-1)`` up to ``max_cooldown_s`` for consecutive trips.

Exception, by default: a **429 with retry-after** reopens at exactly ``now + retry-after``, with no
cool-down floor and no backoff. A 429 is Azure saying precisely when capacity returns; a floor on
top only delays recovery, and it stacks with the attempt loop's own honouring of retry-after
(a 4 s retry-after cost 15 s of waiting with the floor, 8 s without, in the library tests).
``cooldown_on_429=True`` applies the floor and backoff to 429s as well. 503s always get both.

Driver use (the attempt loop)::

    decision, state = acquire(cfg, state, now)   # no await between this and storing state
    if isinstance(decision, Deny): skip this deployment
    ... call upstream ...
    state = record(cfg, state, outcome_for_status(status, retry_after_s), now)

The failure window is bucketed (``buckets_per_window`` buckets) so the state stays small at any
request rate; this is the usual rolling-counter approximation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "Allow",
    "BreakerConfig",
    "BreakerState",
    "Decision",
    "Deny",
    "Outcome",
    "Probe",
    "Status",
    "abandon",
    "acquire",
    "allows",
    "outcome_for_status",
    "record",
    "status_at",
]

Status = Literal["closed", "open", "half_open"]

DEFAULT_WINDOW_S = 30.0
DEFAULT_MIN_REQUESTS = 4
DEFAULT_FAILURE_RATE = 0.5
DEFAULT_CONSECUTIVE_FAILURES = 3
DEFAULT_COOLDOWN_S = 5.0
DEFAULT_MAX_COOLDOWN_S = 300.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_PROBE_LEASE_S = 660.0  # longer than the longest sane image request (SDK default 600 s)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """Breaker tuning.

    | field | meaning |
    |---|---|
    | window_s | rolling window over which the failure rate is judged |
    | min_requests | no rate-based trip with fewer outcomes than this in the window |
    | consecutive_failures | trip after this many failures in a row (0: off), so an outage after a
      busy healthy spell is caught in a few attempts, not after the rate catches up |
    | failure_rate | trip when failures / outcomes ≥ this (0 < x ≤ 1) |
    | cooldown_s | minimum time open before a probe, first trip |
    | max_cooldown_s | cap for the backed-off cool-down |
    | backoff_factor | cool-down multiplier per consecutive trip (failed probe) |
    | probe_lease_s | a probe never recorded frees its slot after this long |
    | cooldown_on_429 | also apply cool-down floor and backoff to 429 + retry-after trips |
    """

    window_s: float = DEFAULT_WINDOW_S
    min_requests: int = DEFAULT_MIN_REQUESTS
    consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES
    failure_rate: float = DEFAULT_FAILURE_RATE
    cooldown_s: float = DEFAULT_COOLDOWN_S
    max_cooldown_s: float = DEFAULT_MAX_COOLDOWN_S
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    probe_lease_s: float = DEFAULT_PROBE_LEASE_S
    buckets_per_window: int = 10
    cooldown_on_429: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.window_s <= 0:
            problems.append(f"window_s={self.window_s!r} must be > 0")
        if self.min_requests < 1:
            problems.append(f"min_requests={self.min_requests!r} must be ≥ 1")
        if self.consecutive_failures < 0:
            problems.append(f"consecutive_failures={self.consecutive_failures!r} must be ≥ 0 (0: off)")
        if not 0 < self.failure_rate <= 1:
            problems.append(f"failure_rate={self.failure_rate!r} must be in (0, 1]")
        if self.cooldown_s < 0 or self.max_cooldown_s < self.cooldown_s:
            problems.append(
                f"cooldown_s={self.cooldown_s!r}, max_cooldown_s={self.max_cooldown_s!r}: "
                "need 0 ≤ cooldown_s ≤ max_cooldown_s"
            )
        if self.backoff_factor < 1:
            problems.append(f"backoff_factor={self.backoff_factor!r} must be ≥ 1")
        if self.probe_lease_s <= 0 or self.buckets_per_window < 1:
            problems.append("probe_lease_s must be > 0 and buckets_per_window ≥ 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def bucket_s(self) -> float:
        return self.window_s / self.buckets_per_window


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt told us about the deployment's health.

    ``ok`` means the deployment did its job or answered a caller mistake (a 400 content filter is
    not the deployment's fault and never counts against it). ``retry_after_s`` on a failure with
    status 429/503 trips the breaker at once.
    """

    ok: bool
    status: int | None = None
    retry_after_s: float | None = None
    reason: str = ""
    started_at: float | None = None  # when the attempt was sent; a success that started before
    # the latest failure is old news and does not reset the failure streak


@dataclass(frozen=True, slots=True)
class BreakerState:
    """``buckets`` holds (bucket index, successes, failures), oldest first, within the window."""

    status: Status = "closed"
    buckets: tuple[tuple[int, int, int], ...] = ()
    opened_at: float | None = None
    reopen_at: float | None = None
    trips: int = 0
    probe_started_at: float | None = None
    reason: str = ""
    throttled: bool = False  # opened by a 429/503 retry-after (capacity), not by failures (health)
    streak: int = 0  # failures in a row while closed (429s neither count nor reset it)
    last_failure_at: float | None = None


@dataclass(frozen=True, slots=True)
class Allow:
    """Closed: send normally."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Half-open and the single probe slot is yours: send one request, then ``record`` it."""


@dataclass(frozen=True, slots=True)
class Deny:
    """Not now. ``until`` is the earliest time this may change (None: when the probe returns)."""

    until: float | None
    reason: str


Decision = Allow | Probe | Deny


def outcome_for_status(
    status: int | None, *, retry_after_s: float | None = None, timed_out: bool = False
) -> Outcome:
    """Classify an attempt for the breaker. ``status=None`` means no response (connect error).

    Success: 2xx, and 4xx that are the caller's fault (400, 409, 413, 415, 422): they prove the
    deployment is up. Failure: no response, timeouts, 401/403/404 (misconfigured deployment: every
    request would fail), 408, 429 and 5xx.
    """
    if timed_out:
        return Outcome(ok=False, status=status, reason="timeout")
    if status is None:
        return Outcome(ok=False, reason="no response")
    if status in (401, 403):
        return Outcome(ok=False, status=status, reason="authentication rejected")
    if status == 404:
        return Outcome(ok=False, status=status, reason="deployment not found")
    if status in (408, 429) or status >= 500:
        return Outcome(ok=False, status=status, retry_after_s=retry_after_s, reason=f"status {status}")
    return Outcome(ok=True, status=status)


def status_at(cfg: BreakerConfig, s: BreakerState, now: float) -> Status:
    """The effective status at ``now``: an open breaker past ``reopen_at`` reads as half-open."""
    if s.status == "open" and s.reopen_at is not None and now >= s.reopen_at:
        return "half_open"
    return s.status


def _probe_in_flight(cfg: BreakerConfig, s: BreakerState, now: float) -> bool:
    return s.probe_started_at is not None and now < s.probe_started_at + cfg.probe_lease_s


def allows(cfg: BreakerConfig, s: BreakerState, now: float) -> Decision:
    """What ``acquire`` would answer, without claiming the probe slot (for routing/doctor)."""
    status = status_at(cfg, s, now)
    if status == "closed":
        return Allow()
    if status == "open":
        return Deny(until=s.reopen_at, reason=f"breaker open: {s.reason}")
    if _probe_in_flight(cfg, s, now):
        assert s.probe_started_at is not None
        return Deny(until=None, reason="breaker half-open: probe in flight")
    return Probe()


def acquire(cfg: BreakerConfig, s: BreakerState, now: float) -> tuple[Decision, BreakerState]:
    """Decide and, for a probe, claim the single half-open slot in the returned state."""
    decision = allows(cfg, s, now)
    if isinstance(decision, Probe):
        return decision, replace(s, status="half_open", probe_started_at=now)
    return decision, s


def abandon(s: BreakerState) -> BreakerState:
    """A claimed probe ended without an outcome (cancelled before sending): free the slot."""
    if s.status == "half_open" and s.probe_started_at is not None:
        return replace(s, probe_started_at=None)
    return s


def _bucketed(cfg: BreakerConfig, s: BreakerState, ok: bool, now: float) -> tuple[tuple[int, int, int], ...]:
    idx = int(now // cfg.bucket_s)
    oldest = idx - cfg.buckets_per_window + 1
    kept = [b for b in s.buckets if b[0] >= oldest]
    if kept and kept[-1][0] == idx:
        _, good, bad = kept[-1]
        kept[-1] = (idx, good + (1 if ok else 0), bad + (0 if ok else 1))
    else:
        kept.append((idx, 1 if ok else 0, 0 if ok else 1))
    return tuple(kept)


def _open(cfg: BreakerConfig, s: BreakerState, o: Outcome, now: float, *, trips: int) -> BreakerState:
    cooldown = min(cfg.max_cooldown_s, cfg.cooldown_s * cfg.backoff_factor ** max(0, trips - 1))
    if o.status == 429 and o.retry_after_s is not None and not cfg.cooldown_on_429:
        cooldown = 0.0  # Azure said exactly when; see the module docstring
    reopen_at = now + max(cooldown, o.retry_after_s or 0.0)
    if s.status == "open" and s.reopen_at is not None:
        reopen_at = max(reopen_at, s.reopen_at)
    return BreakerState(
        status="open",
        buckets=(),
        opened_at=now,
        reopen_at=reopen_at,
        trips=trips,
        probe_started_at=None,
        reason=o.reason or "failure",
        throttled=_throttle_trip(o),
    )


def _throttle_trip(o: Outcome) -> bool:
    return not o.ok and o.status in (429, 503) and o.retry_after_s is not None


def record(cfg: BreakerConfig, s: BreakerState, o: Outcome, now: float) -> BreakerState:
    """Fold one attempt's outcome into the state."""
    status = status_at(cfg, s, now)
    if status == "half_open" and s.probe_started_at is not None:
        if o.ok:
            return BreakerState(status="closed")
        return _open(cfg, s, o, now, trips=s.trips + 1)
    if status in ("open", "half_open"):
        # A straggler that started before the trip: only a fresh retry-after can extend the stay.
        if _throttle_trip(o) and o.retry_after_s is not None and s.reopen_at is not None:
            return replace(s, reopen_at=max(s.reopen_at, now + o.retry_after_s))
        return s
    if _throttle_trip(o):
        return _open(cfg, s, o, now, trips=1)
    buckets = _bucketed(cfg, s, o.ok, now)
    good = sum(b[1] for b in buckets)
    bad = sum(b[2] for b in buckets)
    total = good + bad
    streak, last_failure_at = _streak(s, o, now)
    if not o.ok and total >= cfg.min_requests and bad / total >= cfg.failure_rate:
        reason = f"{bad}/{total} failures in {cfg.window_s:g}s (last: {o.reason or 'failure'})"
        return _open(cfg, s, replace(o, reason=reason), now, trips=1)
    if cfg.consecutive_failures and streak >= cfg.consecutive_failures:
        reason = f"{streak} failures in a row (last: {o.reason or 'failure'})"
        return _open(cfg, s, replace(o, reason=reason), now, trips=1)
    return replace(s, buckets=buckets, streak=streak, last_failure_at=last_failure_at)


def _streak(s: BreakerState, o: Outcome, now: float) -> tuple[int, float | None]:
    """Failures in a row. With many requests in flight, responses to requests sent before an
    outage began keep arriving as successes after it; only a success sent after the latest
    failure proves the deployment works again."""
    if o.status == 429:
        return s.streak, s.last_failure_at
    if not o.ok:
        return s.streak + 1, now
    stale = o.started_at is not None and s.last_failure_at is not None and o.started_at < s.last_failure_at
    return (s.streak if stale else 0), s.last_failure_at

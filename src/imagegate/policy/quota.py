"""A model of how Azure judges a deployment's request quota, so we never send what it would refuse.

Azure states image quotas in requests per minute but *evaluates* them "over a small period of time,
typically 1 or 10 seconds" (how-to/quota.md): a 600 RPM deployment is limited when more than 10
requests arrive in one second. So the gateway must pace, not just count per minute.

The model, per deployment:

* **Per-window allowance.** ``allowed = floor(rpm / 60 · W)`` requests in any window of ``W``
  seconds. When that is below one (6 RPM judged over 1 s is 0.1), the window is stretched to
  ``60 / rpm`` so one request fits: ``W_eff = max(window_s, 60 / rpm)``. Fractions round *down*
  because Azure cannot admit 1.5 requests: with 9 RPM over 10 s windows, a second request in any
  10 s span is already over the limit, so the sustainable rate is 6 RPM. Say so in capacity plans.
* **Sliding, not fixed, windows.** We keep the grant times (a sliding log) and admit a request only
  if fewer than ``allowed`` grants lie in ``(now - W_eff, now]``. Azure behaves like a rolling
  counter; and even if it used fixed windows, every fixed window is one of the sliding windows, so
  the sliding rule is safe under both readings. The log holds at most a few entries per window
  (image quotas are small), so we keep exact times instead of approximating.
* **Concurrency, as leases.** ``max_concurrent`` (DALL·E 2's quota is "2 concurrent requests").
  Each granted request holds a slot as a lease ``(lease_id, expires_at)`` until ``release`` (when
  the attempt ends) or until the lease expires, whichever is first: a process that dies mid-request
  (or a task torn down without ``release``) would otherwise hold its slots for ever once the state
  is shared between replicas. The lease runs to the request's deadline (plus ``lease_grace_s``,
  for the bookkeeping after a cut-off attempt) or, when the caller knows none, ``max_lease_s``;
  either must outlast any legitimate request, or a slow healthy request would be counted out and
  its slot granted twice. Expired leases are dropped whenever the state is evaluated at ``now``;
  at most ``max_concurrent`` are live, so the state stays small. Without a cap, leases still count
  what is in flight (for status), bounded by the rate allowance.
* **Learning (AIMD).** The configured RPM may be wrong (quota changed in the portal, shared with
  another client). A 429 halves the *effective* RPM (at most once per window, so a burst of
  in-flight 429s counts once; by one slot per window when the throttled request took our
  window's last slot, see ``on_throttled``), down to ``min_rpm_fraction · rpm``, and blocks the
  deployment until its ``retry-after`` (or one window when absent).
  ``x-ratelimit-remaining-requests: 0`` while our own log still has room blocks until Azure's
  window (anchored at the request's admission) has rolled, and a remaining count lower than our
  own bookkeeping expects lowers the effective RPM to match. After ``recover_after_s`` without a
  429, the effective RPM climbs back by ``increase_fraction · rpm`` per period, never above the
  configured RPM.

Hand-written rather than ``limits``' moving window because we need the learning, the honest
"capacity at" time for retry-after, and a pure state that a Redis adapter can store as a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = [
    "Granted",
    "Lease",
    "QuotaConfig",
    "QuotaState",
    "Wait",
    "allowance",
    "effective_rpm",
    "effective_window_s",
    "grants_in_window",
    "headroom",
    "in_flight",
    "on_remaining",
    "on_throttled",
    "release",
    "try_acquire",
]

DEFAULT_WINDOW_S = 10.0
DEFAULT_RECOVER_AFTER_S = 60.0
DEFAULT_INCREASE_FRACTION = 0.1
DEFAULT_DECREASE_FACTOR = 0.5
DEFAULT_MIN_RPM_FRACTION = 0.1
DEFAULT_MAX_LEASE_S = 900.0  # image requests take seconds to a few minutes; Azure cuts off long before
DEFAULT_LEASE_GRACE_S = 30.0

Lease = tuple[str, float]  # (lease_id, expires_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaConfig:
    """One deployment's quota as configured.

    | field | meaning |
    |---|---|
    | rpm | requests per minute granted in Azure (the portal's figure) |
    | window_s | the window Azure judges the rate over (1 or 10 s) |
    | max_concurrent | concurrent-request cap (None: none) |
    | recover_after_s | time without a 429 before each additive step back up |
    | increase_fraction | additive step, as a fraction of ``rpm`` |
    | decrease_factor | multiplicative cut on a 429 |
    | min_rpm_fraction | the effective RPM never goes below this fraction of ``rpm`` |
    | max_lease_s | a concurrency slot never released is reclaimed after this long (no deadline known) |
    | lease_grace_s | with a deadline known, the slot is reclaimed this long after it |
    """

    rpm: float
    window_s: float = DEFAULT_WINDOW_S
    max_concurrent: int | None = None
    recover_after_s: float = DEFAULT_RECOVER_AFTER_S
    increase_fraction: float = DEFAULT_INCREASE_FRACTION
    decrease_factor: float = DEFAULT_DECREASE_FACTOR
    min_rpm_fraction: float = DEFAULT_MIN_RPM_FRACTION
    max_lease_s: float = DEFAULT_MAX_LEASE_S
    lease_grace_s: float = DEFAULT_LEASE_GRACE_S

    def __post_init__(self) -> None:
        problems = []
        if not self.rpm > 0:
            problems.append(f"rpm={self.rpm!r} must be > 0")
        if not self.window_s > 0:
            problems.append(f"window_s={self.window_s!r} must be > 0 (Azure uses 1 or 10)")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            problems.append(f"max_concurrent={self.max_concurrent!r} must be ≥ 1 or unset")
        if not 0 < self.decrease_factor < 1:
            problems.append(f"decrease_factor={self.decrease_factor!r} must be in (0, 1)")
        if not 0 < self.min_rpm_fraction <= 1 or not 0 < self.increase_fraction <= 1:
            problems.append("min_rpm_fraction and increase_fraction must be in (0, 1]")
        if self.recover_after_s <= 0:
            problems.append(f"recover_after_s={self.recover_after_s!r} must be > 0")
        if not self.max_lease_s > 0 or not self.lease_grace_s >= 0:
            problems.append(
                f"max_lease_s={self.max_lease_s!r} must be > 0 and lease_grace_s={self.lease_grace_s!r} ≥ 0"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def min_rpm(self) -> float:
        return self.rpm * self.min_rpm_fraction

    @property
    def max_window_s(self) -> float:
        """The longest window the effective RPM can imply; the log keeps grants this long."""
        return effective_window_s(self, self.min_rpm)


@dataclass(frozen=True, slots=True)
class QuotaState:
    """``grants`` are grant times, oldest first. ``leases`` are the concurrency slots held, as
    ``(lease_id, expires_at)`` in grant order (some may have expired since; see ``in_flight``).
    ``effective_rpm`` None means the configured RPM."""

    grants: tuple[float, ...] = ()
    leases: tuple[Lease, ...] = ()
    effective_rpm: float | None = None
    blocked_until: float = -math.inf
    block_reason: str = ""
    last_decrease_at: float = -math.inf
    last_change_at: float = -math.inf


@dataclass(frozen=True, slots=True)
class Granted:
    """Send now. Call ``release`` with ``lease_id`` when the attempt ends, whatever its outcome
    (the slot is reclaimed at ``expires_at`` otherwise). ``used`` is how many grants (this one
    included) the window held at admission; pass it to ``on_remaining``."""

    used: int = 1
    lease_id: str = ""
    expires_at: float = math.inf


@dataclass(frozen=True, slots=True)
class Wait:
    """Not now. ``until`` is when capacity is next expected; None means "when one in flight ends"."""

    until: float | None
    reason: str


def effective_window_s(cfg: QuotaConfig, rpm: float) -> float:
    return max(cfg.window_s, 60.0 / rpm)


def allowance(cfg: QuotaConfig, rpm: float) -> int:
    """Requests admitted in any window of ``effective_window_s(cfg, rpm)`` seconds (≥ 1)."""
    window = effective_window_s(cfg, rpm)
    # The epsilon keeps 600 RPM · 1 s = 10 from flooring to 9 through float error.
    return max(1, math.floor(rpm * window / 60.0 + 1e-9))


def effective_rpm(cfg: QuotaConfig, s: QuotaState, now: float) -> float:
    """The effective RPM at ``now``, including additive recovery since the last change."""
    if s.effective_rpm is None:
        return cfg.rpm
    since = max(s.last_change_at, s.last_decrease_at)
    periods = math.floor(max(0.0, now - since) / cfg.recover_after_s)
    return min(cfg.rpm, s.effective_rpm + periods * cfg.increase_fraction * cfg.rpm)


def _settle(cfg: QuotaConfig, s: QuotaState, now: float) -> QuotaState:
    """Apply recovery and drop grants no window can see any more."""
    rpm = effective_rpm(cfg, s, now)
    eff: float | None = rpm
    changed = s.last_change_at
    if s.effective_rpm is not None and rpm != s.effective_rpm:
        since = max(s.last_change_at, s.last_decrease_at)
        periods = math.floor(max(0.0, now - since) / cfg.recover_after_s)
        changed = since + periods * cfg.recover_after_s
    if rpm >= cfg.rpm:
        eff = None
    horizon = now - cfg.max_window_s
    grants = tuple(g for g in s.grants if g > horizon)
    leases = _live(s, now)
    return replace(s, grants=grants, leases=leases, effective_rpm=eff, last_change_at=changed)


def _live(s: QuotaState, now: float) -> tuple[Lease, ...]:
    return tuple(lease for lease in s.leases if lease[1] > now)


def in_flight(s: QuotaState, now: float) -> int:
    """Concurrency slots held at ``now``: leases neither released nor expired."""
    return len(_live(s, now))


def grants_in_window(cfg: QuotaConfig, s: QuotaState, now: float) -> tuple[float, ...]:
    """Grants that Azure would still count against the current effective window."""
    window = effective_window_s(cfg, effective_rpm(cfg, s, now))
    return tuple(g for g in s.grants if g + window > now)  # same form as `until` below: no float gap


def try_acquire(
    cfg: QuotaConfig,
    s: QuotaState,
    now: float,
    *,
    lease_id: str = "",
    deadline: float | None = None,
) -> tuple[Granted | Wait, QuotaState]:
    """Grant one request slot at ``now`` or say until when to wait.

    ``lease_id`` names the concurrency slot for ``release`` (unique among live leases; the caller
    makes it, e.g. a random id, because several replicas grant from one state). ``deadline`` is the
    request's own: the slot is reclaimed ``lease_grace_s`` after it, or ``max_lease_s`` from now
    when None."""
    s = _settle(cfg, s, now)
    if now < s.blocked_until:
        return Wait(until=s.blocked_until, reason=s.block_reason or "blocked"), s
    rpm = effective_rpm(cfg, s, now)
    window = effective_window_s(cfg, rpm)
    allowed = allowance(cfg, rpm)
    recent = grants_in_window(cfg, s, now)
    if len(recent) >= allowed:
        until = recent[len(recent) - allowed] + window
        return Wait(until=until, reason=f"{allowed} request(s) per {window:g}s window used ({rpm:g} RPM)"), s
    if cfg.max_concurrent is not None and len(s.leases) >= cfg.max_concurrent:
        return Wait(until=None, reason=f"{len(s.leases)}/{cfg.max_concurrent} concurrent requests"), s
    expires = now + cfg.max_lease_s if deadline is None else max(now, deadline) + cfg.lease_grace_s
    if expires <= now:  # lease_grace_s = 0 with a deadline already here: hold it for an instant
        expires = math.nextafter(now, math.inf)
    granted = Granted(used=len(recent) + 1, lease_id=lease_id, expires_at=expires)
    return granted, replace(s, grants=(*s.grants, now), leases=(*s.leases, (lease_id, expires)))


def release(s: QuotaState, lease_id: str) -> QuotaState:
    """The attempt holding ``lease_id`` has ended (success, failure or cancellation). Releasing a
    lease twice, an expired one, or one never granted changes nothing (one entry per call)."""
    for i, lease in enumerate(s.leases):
        if lease[0] == lease_id:
            return replace(s, leases=s.leases[:i] + s.leases[i + 1 :])
    return s


def on_throttled(
    cfg: QuotaConfig, s: QuotaState, retry_after_s: float | None, now: float, *, used: int | None = None
) -> QuotaState:
    """Azure answered 429: cut the effective RPM (once per window) and block until retry-after.

    ``used`` is the throttled request's ``Granted.used``. When it took the last slot of our
    window, Azure's limit is at most ours, not half of it: pacing at exactly the quota, a request
    sent just before Azure's window boundary can arrive just after it. Then the cut is one slot
    per window (10 → 9 per second), which converges on a limit one below ours without halving
    the deployment for minutes over a few milliseconds of skew."""
    s = _settle(cfg, s, now)
    rpm = effective_rpm(cfg, s, now)
    window = effective_window_s(cfg, rpm)
    allowed = allowance(cfg, rpm)
    wait_s = retry_after_s if retry_after_s is not None and retry_after_s >= 0 else window
    blocked_until = max(s.blocked_until, now + wait_s)
    reason = f"429 from Azure; retry-after {wait_s:g}s"
    if now - s.last_decrease_at < window:
        return replace(s, blocked_until=blocked_until, block_reason=reason)
    factor = cfg.decrease_factor
    if used is not None and used >= allowed > 1:
        factor = (allowed - 1) / allowed
    new_rpm = max(cfg.min_rpm, rpm * factor)
    return replace(
        s,
        effective_rpm=new_rpm,
        blocked_until=blocked_until,
        block_reason=reason,
        last_decrease_at=now,
        last_change_at=now,
    )


def on_remaining(
    cfg: QuotaConfig, s: QuotaState, remaining: int, admitted_at: float, used: int
) -> QuotaState:
    """Learn from ``x-ratelimit-remaining-requests`` on the response to a request granted at
    ``admitted_at`` when our window held ``used`` grants (``Granted.used``).

    The header describes Azure's window when it *admitted* the request, which for an image can be
    minutes before the response arrives; so the block and the comparison are anchored there, not
    at the response time. Azure's count in its window never exceeds ours in the sliding window
    ending at admission, so ``used + remaining`` below our allowance means Azure grants less than
    we believe. Negative values (Azure sometimes sends -1) carry no information.
    """
    if remaining < 0:
        return s
    s = _settle(cfg, s, admitted_at)
    rpm = effective_rpm(cfg, s, admitted_at)
    window = effective_window_s(cfg, rpm)
    allowed = allowance(cfg, rpm)
    if remaining == 0 and used < allowed:
        # Azure's window is full although ours is not: wait for Azure's window to roll.
        s = replace(
            s,
            blocked_until=max(s.blocked_until, admitted_at + window),
            block_reason="x-ratelimit-remaining-requests: 0",
        )
    elif remaining == 0 and s.effective_rpm is not None:
        # Our window is full and so is Azure's: the sliding log already waits exactly until the
        # oldest grant ages out (blocking a whole window from here wasted most of every other
        # window). It is also Azure confirming the lowered rate, so do not probe upwards yet.
        s = replace(s, last_change_at=max(s.last_change_at, admitted_at))
    believed = used + remaining
    if believed >= allowed:
        return s
    # Azure admits fewer than we thought: scale the effective RPM to what it reports.
    new_rpm = max(cfg.min_rpm, min(rpm, believed * 60.0 / window))
    if new_rpm >= rpm:
        return s
    return replace(s, effective_rpm=new_rpm, last_change_at=admitted_at)


def headroom(cfg: QuotaConfig, s: QuotaState, now: float) -> float:
    """Free fraction of the current window's allowance (0 when blocked or at the concurrency cap)."""
    s = _settle(cfg, s, now)
    if now < s.blocked_until:
        return 0.0
    if cfg.max_concurrent is not None and len(s.leases) >= cfg.max_concurrent:
        return 0.0
    rpm = effective_rpm(cfg, s, now)
    allowed = allowance(cfg, rpm)
    return max(0, allowed - len(grants_in_window(cfg, s, now))) / allowed

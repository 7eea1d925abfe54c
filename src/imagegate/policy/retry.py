"""Whether and when the attempt loop tries again, given what the last attempt became.

Pure: the error (already classified into the ``errors`` tree), the attempt number, the time
spent so far and a random number in [0, 1) go in; ``Retry(delay_s, fail_over)`` or
``GiveUp(reason)`` comes out. ``upstream/client.py`` is the only caller and the only loop.

Backoff is full jitter (AWS architecture blog): before retry ``k`` (1-based),
``delay = rand * min(max_backoff_s, initial_backoff_s * 2**(k-1))``.
A ``retry-after`` from the deployment replaces that delay on *every* retry to the same
deployment, when it is at most ``max_retry_after_s``; a longer one ends the loop (or fails over).
Failing over to the next deployment of the plan counts as an attempt and does not wait: the
retry-after belongs to the deployment that sent it.

Never retried: a content-filter rejection (the same prompt is rejected again) and caller
mistakes. A read timeout after sending may have been billed, so it is resent only when
``retry_sent_timeouts`` is set. Nothing is retried past ``deadline_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagegate.config import RetryConfig
from imagegate.errors import (
    ClientError,
    ContentFiltered,
    ImageGateError,
    RateLimited,
    UpstreamFailed,
    UpstreamNotSent,
    UpstreamRejected,
    UpstreamStatusError,
)

__all__ = ["Decision", "GiveUp", "Retry", "backoff_s", "decide", "retry_after_of"]


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    fail_over: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


Decision = Retry | GiveUp


def backoff_s(cfg: RetryConfig, retry: int, rand: float) -> float:
    """Full-jitter delay before retry number ``retry`` (1-based)."""
    cap = min(cfg.max_backoff_s, cfg.initial_backoff_s * 2.0 ** max(retry - 1, 0))
    return max(0.0, min(rand, 1.0)) * cap


def retry_after_of(error: ImageGateError) -> float | None:
    value = getattr(error, "retry_after_s", None)
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _never(error: ImageGateError, cfg: RetryConfig) -> str | None:
    """Why this error must not be retried at all, or ``None``."""
    if isinstance(error, ContentFiltered):
        return "rejected by the content filter; the same prompt would be rejected again"
    if isinstance(error, ClientError) and not isinstance(error, RateLimited):
        return f"the request itself was refused ({error.code})"
    if isinstance(error, UpstreamStatusError) and error.status_code not in cfg.retry_statuses:
        return f"status {error.status_code} is not retryable"
    sent_unknown = isinstance(error, UpstreamFailed) and not isinstance(error, UpstreamStatusError)
    if sent_unknown and not cfg.retry_sent_timeouts:
        return "the request was sent and may have been billed; resending is disabled (retry_sent_timeouts)"
    return None


def decide(
    cfg: RetryConfig,
    *,
    attempt: int,
    error: ImageGateError,
    rand: float,
    elapsed_s: float,
    can_fail_over: bool,
) -> Decision:
    """``attempt`` is the 1-based number of the attempt that just failed with ``error``."""
    if isinstance(error, UpstreamRejected):
        # our configuration for that deployment is wrong; another deployment may be fine
        return (
            Retry(0.0, fail_over=True)
            if can_fail_over and attempt < cfg.max_attempts
            else GiveUp(error.message)
        )
    if not isinstance(error, UpstreamNotSent | UpstreamFailed | RateLimited):
        return GiveUp(_never(error, cfg) or f"{error.code} is not retryable")
    reason = _never(error, cfg)
    if reason is not None:
        return GiveUp(reason)
    if attempt >= cfg.max_attempts:
        return GiveUp(f"gave up after {attempt} attempt(s)")
    if can_fail_over:
        return Retry(0.0, fail_over=True)
    retry_after = retry_after_of(error)
    if retry_after is not None and retry_after > cfg.max_retry_after_s:
        return GiveUp(
            f"retry-after {retry_after:g} s is longer than max_retry_after_s={cfg.max_retry_after_s:g}"
        )
    delay = retry_after if retry_after is not None else backoff_s(cfg, attempt, rand)
    if elapsed_s + delay >= cfg.deadline_s:
        return GiveUp(f"waiting {delay:g} s more would pass the {cfg.deadline_s:g} s deadline")
    return Retry(delay)

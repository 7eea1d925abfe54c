from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.config import RetryConfig
from imagegate.errors import (
    AuthenticationError,
    ContentFiltered,
    ImageGateError,
    InvalidRequest,
    RateLimited,
    UpstreamFailed,
    UpstreamNotSent,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from imagegate.policy.retry import GiveUp, Retry, backoff_s, decide

CFG = RetryConfig(
    max_attempts=4, initial_backoff_s=0.5, max_backoff_s=8.0, max_retry_after_s=120.0, deadline_s=600
)


def run(
    error: ImageGateError,
    *,
    attempt: int = 1,
    rand: float = 0.5,
    elapsed: float = 0.0,
    fail_over: bool = False,
    cfg: RetryConfig = CFG,
) -> Retry | GiveUp:
    return decide(cfg, attempt=attempt, error=error, rand=rand, elapsed_s=elapsed, can_fail_over=fail_over)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RateLimited("slow", retry_after_s=7), Retry(7.0)),
        (UpstreamStatusError("boom", status_code=500), Retry(0.25)),  # 0.5 * min(8, 0.5)
        (UpstreamStatusError("busy", status_code=503, retry_after_s=2), Retry(2.0)),
        (UpstreamNotSent("refused"), Retry(0.25)),
        (UpstreamStatusError("bad", status_code=501), GiveUp("status 501 is not retryable")),
    ],
)
def test_table(error: ImageGateError, expected: Retry | GiveUp) -> None:
    assert run(error) == expected


def test_content_filter_never_retried() -> None:
    out = run(ContentFiltered("no", categories=["violence"]), fail_over=True)
    assert isinstance(out, GiveUp) and "content filter" in out.reason


@pytest.mark.parametrize("error", [InvalidRequest("bad"), AuthenticationError("who")])
def test_client_errors_never_retried(error: ImageGateError) -> None:
    assert isinstance(run(error, fail_over=True), GiveUp)


def test_retry_after_honoured_on_every_retry_and_capped() -> None:
    for attempt in (1, 2, 3):
        assert run(RateLimited("x", retry_after_s=30), attempt=attempt) == Retry(30.0)
    out = run(RateLimited("x", retry_after_s=86400))
    assert isinstance(out, GiveUp) and "86400" in out.reason


def test_attempts_exhausted() -> None:
    out = run(RateLimited("x", retry_after_s=1), attempt=4)
    assert isinstance(out, GiveUp) and "4 attempt" in out.reason


def test_deadline() -> None:
    out = run(RateLimited("x", retry_after_s=60), elapsed=590)
    assert isinstance(out, GiveUp) and "deadline" in out.reason


def test_sent_timeout_resend_is_a_setting() -> None:
    assert isinstance(run(UpstreamTimeout("late")), GiveUp)
    assert isinstance(run(UpstreamFailed("dropped after send")), GiveUp)
    allowed = RetryConfig(retry_sent_timeouts=True)
    assert isinstance(run(UpstreamTimeout("late"), cfg=allowed), Retry)


def test_fail_over_is_immediate_and_counts() -> None:
    assert run(RateLimited("x", retry_after_s=30), fail_over=True) == Retry(0.0, fail_over=True)
    assert run(UpstreamRejected("bad key", status_code=401), fail_over=True) == Retry(0.0, fail_over=True)
    assert isinstance(run(UpstreamRejected("bad key", status_code=401)), GiveUp)
    assert isinstance(run(UpstreamNotSent("x"), attempt=4, fail_over=True), GiveUp)


@given(st.integers(1, 50), st.floats(0, 1))
def test_full_jitter_bounds(retry: int, rand: float) -> None:
    delay = backoff_s(CFG, retry, rand)
    assert 0 <= delay <= min(CFG.max_backoff_s, CFG.initial_backoff_s * 2 ** (retry - 1))

"""Circuit breaker: transition tables plus hypothesis invariants (no early half-open, one probe)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate.policy.breaker import (
    Allow,
    BreakerConfig,
    BreakerState,
    Deny,
    Outcome,
    Probe,
    abandon,
    acquire,
    allows,
    outcome_for_status,
    record,
    status_at,
)

CFG = BreakerConfig(
    window_s=10,
    min_requests=4,
    failure_rate=0.5,
    cooldown_s=5,
    backoff_factor=2,
    cooldown_on_429=True,
    consecutive_failures=0,  # rate rule alone here; the streak rule has its own tests
)
OK = Outcome(ok=True, status=200)
FAIL = Outcome(ok=False, status=500, reason="status 500")


def run(outcomes: list[Outcome], *, start: float = 0.0, step: float = 0.1) -> BreakerState:
    s = BreakerState()
    for i, o in enumerate(outcomes):
        s = record(CFG, s, o, start + i * step)
    return s


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ([OK] * 10, "closed"),
        ([FAIL] * 3, "closed"),  # below min_requests
        ([FAIL] * 4, "open"),
        ([OK, OK, FAIL, FAIL], "open"),  # 2/4 = 50 %
        ([OK, OK, OK, FAIL, FAIL], "closed"),  # 2/5 = 40 %
        ([Outcome(ok=False, status=429, retry_after_s=30)], "open"),  # immediate trip
        ([Outcome(ok=False, status=503, retry_after_s=1)], "open"),
        ([Outcome(ok=False, status=429)] * 3, "closed"),  # 429 without retry-after: rate-based only
    ],
)
def test_closed_transitions(outcomes: list[Outcome], status: str) -> None:
    assert run(outcomes).status == status


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ([OK] * 20 + [FAIL] * 2, "closed"),
        ([OK] * 20 + [FAIL] * 3, "open"),  # rate is only 3/23; the streak catches the outage
        ([OK] * 20 + [FAIL, FAIL, OK, FAIL, FAIL], "closed"),  # a success resets the streak
        ([OK] * 20 + [FAIL, FAIL, Outcome(ok=False, status=429), FAIL], "open"),  # 429s do not reset it
        ([OK] * 20 + [Outcome(ok=False, status=429)] * 5, "closed"),  # ... nor count
    ],
)
def test_consecutive_failures_trip(outcomes: list[Outcome], status: str) -> None:
    cfg = BreakerConfig(window_s=10, min_requests=4, consecutive_failures=3)
    s = BreakerState()
    for i, o in enumerate(outcomes):
        s = record(cfg, s, o, i * 0.01)
    assert s.status == status
    if status == "open":
        assert s.reason.startswith("3 failures in a row")


def test_success_sent_before_the_latest_failure_does_not_reset_the_streak() -> None:
    cfg = BreakerConfig(consecutive_failures=3)
    s = BreakerState()
    for t in (10.0, 10.1):
        s = record(cfg, s, FAIL, t)
    s = record(cfg, s, Outcome(ok=True, status=200, started_at=5.0), 10.2)  # in flight since before
    assert s.streak == 2
    s = record(cfg, s, FAIL, 10.3)
    assert s.status == "open"
    fresh = BreakerState()
    for t in (10.0, 10.1):
        fresh = record(cfg, fresh, FAIL, t)
    fresh = record(cfg, fresh, Outcome(ok=True, status=200, started_at=10.15), 10.2)
    assert fresh.streak == 0


def test_old_failures_leave_the_window() -> None:
    s = BreakerState()
    for t in (0.0, 0.5, 1.0):
        s = record(CFG, s, FAIL, t)
    # 20 s later the first three failures are outside the 10 s window: one more does not trip.
    s = record(CFG, s, FAIL, 21.0)
    assert s.status == "closed"


@pytest.mark.parametrize(
    ("retry_after_s", "reopen_at"),
    [(None, 105.0), (1.0, 105.0), (5.0, 105.0), (30.0, 130.0)],
)
def test_open_stays_open_for_max_of_cooldown_and_retry_after(
    retry_after_s: float | None, reopen_at: float
) -> None:
    o = Outcome(ok=False, status=429, retry_after_s=retry_after_s)
    s = BreakerState()
    if retry_after_s is None:  # trip by rate instead
        for i in range(3):
            s = record(CFG, s, FAIL, 100.0 - 0.1 * (3 - i))
        o = FAIL
    s = record(CFG, s, o, 100.0)
    assert s.status == "open"
    assert s.reopen_at == reopen_at
    assert isinstance(allows(CFG, s, reopen_at - 0.001), Deny)
    assert isinstance(allows(CFG, s, reopen_at), Probe)


def test_429_by_default_reopens_exactly_at_retry_after_without_backoff() -> None:
    cfg = BreakerConfig(cooldown_s=5)
    s = record(cfg, BreakerState(), Outcome(ok=False, status=429, retry_after_s=1), 100.0)
    assert s.reopen_at == 101.0
    _, s = acquire(cfg, s, 101.0)
    s = record(cfg, s, Outcome(ok=False, status=429, retry_after_s=2), 101.5)
    assert s.reopen_at == 103.5 and s.trips == 2  # no backoff for a 429 either
    _, s = acquire(cfg, s, 103.5)
    s = record(cfg, s, FAIL, 104.0)
    assert s.reopen_at == 104.0 + 20.0  # a real failure: cool-down 5 s backed off for the third trip
    s = record(cfg, BreakerState(), Outcome(ok=False, status=503, retry_after_s=1), 0.0)
    assert s.reopen_at == 5.0  # 503s always get the cool-down floor


def test_single_probe_then_close_on_success() -> None:
    s = record(CFG, BreakerState(), Outcome(ok=False, status=429, retry_after_s=2), 0.0)
    assert status_at(CFG, s, 5.0) == "half_open"
    d1, s = acquire(CFG, s, 5.0)
    d2, s = acquire(CFG, s, 5.1)
    assert isinstance(d1, Probe)
    assert isinstance(d2, Deny) and d2.until is None
    s = record(CFG, s, OK, 9.0)
    assert s.status == "closed"
    assert isinstance(acquire(CFG, s, 9.0)[0], Allow)


def test_failed_probe_reopens_with_backoff() -> None:
    s = record(CFG, BreakerState(), Outcome(ok=False, status=429, retry_after_s=1), 0.0)
    _, s = acquire(CFG, s, 5.0)
    s = record(CFG, s, FAIL, 6.0)
    assert s.status == "open" and s.trips == 2
    assert s.reopen_at == 6.0 + 10.0  # cooldown 5 · 2
    _, s = acquire(CFG, s, 16.0)
    s = record(CFG, s, FAIL, 16.0)
    assert s.reopen_at == 16.0 + 20.0


def test_backoff_is_capped() -> None:
    cfg = BreakerConfig(cooldown_s=5, max_cooldown_s=12, backoff_factor=10)
    s = record(cfg, BreakerState(), Outcome(ok=False, status=429, retry_after_s=0), 0.0)
    _, s = acquire(cfg, s, 5.0)
    s = record(cfg, s, FAIL, 5.0)
    assert s.reopen_at == 17.0


def test_lost_probe_lease_expires() -> None:
    cfg = BreakerConfig(cooldown_s=1, probe_lease_s=30)
    s = record(cfg, BreakerState(), Outcome(ok=False, status=503, retry_after_s=1), 0.0)
    d, s = acquire(cfg, s, 1.0)
    assert isinstance(d, Probe)
    assert isinstance(acquire(cfg, s, 30.9)[0], Deny)
    assert isinstance(acquire(cfg, s, 31.0)[0], Probe)


def test_straggler_retry_after_extends_open_state() -> None:
    s = record(CFG, BreakerState(), Outcome(ok=False, status=429, retry_after_s=10), 0.0)
    s = record(CFG, s, Outcome(ok=False, status=429, retry_after_s=60), 1.0)
    assert s.reopen_at == 61.0
    s = record(CFG, s, OK, 2.0)  # a late success does not close an open breaker
    assert s.status == "open"


@pytest.mark.parametrize(
    ("status", "timed_out", "ok"),
    [
        (200, False, True),
        (400, False, True),  # caller's mistake or content filter: not the deployment's fault
        (None, False, False),
        (200, True, False),
        (401, False, False),
        (404, False, False),
        (408, False, False),
        (429, False, False),
        (500, False, False),
        (503, False, False),
    ],
)
def test_outcome_for_status(status: int | None, timed_out: bool, ok: bool) -> None:
    assert outcome_for_status(status, timed_out=timed_out).ok is ok


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_s": 0},
        {"min_requests": 0},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"cooldown_s": 10, "max_cooldown_s": 5},
        {"backoff_factor": 0.5},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=20),  # time step
        st.sampled_from(["acquire", "ok", "fail", "429", "429ra"]),
        st.floats(min_value=0, max_value=60),  # retry-after
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(events, st.booleans())
def test_invariants_never_early_half_open_and_one_probe(
    seq: list[tuple[float, str, float]], floor_on_429: bool
) -> None:
    cfg = BreakerConfig(
        window_s=10, min_requests=2, cooldown_s=3, probe_lease_s=50, cooldown_on_429=floor_on_429
    )
    s = BreakerState()
    now = 0.0
    earliest_reopen = float("-inf")  # the latest promise made: cool-down and retry-after
    probes_in_flight: list[float] = []
    for dt, kind, ra in seq:
        now += dt
        probes_in_flight = [p for p in probes_in_flight if now < p + cfg.probe_lease_s]
        if kind == "acquire":
            decision, s = acquire(cfg, s, now)
            if isinstance(decision, Probe):
                assert now >= earliest_reopen, "half-opened before cool-down / retry-after"
                assert not probes_in_flight, "a second probe while one is in flight"
                probes_in_flight.append(now)
            continue
        before = s
        outcome = {
            "ok": OK,
            "fail": FAIL,
            "429": Outcome(ok=False, status=429),
            "429ra": Outcome(ok=False, status=429, retry_after_s=ra),
        }[kind]
        s = record(cfg, s, outcome, now)
        if before.probe_started_at is not None and status_at(cfg, before, now) == "half_open":
            probes_in_flight = []  # the probe (or what counts as it) returned
        if s.status == "open":
            assert s.reopen_at is not None
            floor = cfg.cooldown_s if (floor_on_429 or kind != "429ra") else 0.0
            assert s.reopen_at >= now + floor or before.status != "closed" or s is before
            if s is not before:
                earliest_reopen = max(earliest_reopen, s.reopen_at)
        if kind == "429ra" and s.status == "open":
            assert s.reopen_at is not None and s.reopen_at >= now + ra


def test_trip_cause_is_recorded() -> None:
    assert run([Outcome(ok=False, status=429, retry_after_s=3)]).throttled is True
    assert run([FAIL] * 4).throttled is False


def test_abandoned_probe_frees_the_slot() -> None:
    s = record(CFG, BreakerState(), Outcome(ok=False, status=429, retry_after_s=1), 0.0)
    _, s = acquire(CFG, s, 6.0)
    assert isinstance(acquire(CFG, s, 6.0)[0], Deny)
    s = abandon(s)
    assert isinstance(acquire(CFG, s, 6.0)[0], Probe)
    assert abandon(BreakerState()) == BreakerState()

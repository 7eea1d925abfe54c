"""Quota model: allowance table, sliding window, concurrency, AIMD learning, and the invariant
that granted requests never exceed the limit in any window (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate.policy.quota import (
    Granted,
    QuotaConfig,
    QuotaState,
    Wait,
    allowance,
    effective_window_s,
    grants_in_window,
    headroom,
    in_flight,
    on_remaining,
    on_throttled,
    release,
    try_acquire,
)


@pytest.mark.parametrize(
    ("rpm", "window_s", "allowed", "eff_window"),
    [
        (600, 1, 10, 1),  # the Azure doc's example: >10 in one second is limited
        (600, 10, 100, 10),
        (6, 10, 1, 10),  # default gpt-image-1 quota: one per 10 s
        (6, 1, 1, 10),  # below one per window: the window stretches to 60/rpm
        (9, 10, 1, 10),  # 1.5 rounds down: a second request in 10 s is over
        (90, 10, 15, 10),
        (3, 10, 1, 20),
    ],
)
def test_allowance_table(rpm: float, window_s: float, allowed: int, eff_window: float) -> None:
    cfg = QuotaConfig(rpm=rpm, window_s=window_s)
    assert allowance(cfg, rpm) == allowed
    assert effective_window_s(cfg, rpm) == eff_window


def acquire_n(cfg: QuotaConfig, s: QuotaState, now: float, n: int) -> tuple[list[Granted | Wait], QuotaState]:
    out: list[Granted | Wait] = []
    for _ in range(n):
        d, s = try_acquire(cfg, s, now)
        out.append(d)
    return out, s


def test_sliding_window_grants_then_waits_until_oldest_leaves() -> None:
    cfg = QuotaConfig(rpm=120, window_s=10)  # 20 per 10 s
    ds, s = acquire_n(cfg, QuotaState(), 0.0, 20)
    assert all(isinstance(d, Granted) for d in ds)
    d, s = try_acquire(cfg, s, 9.9)
    assert isinstance(d, Wait) and d.until == 10.0
    d, s = try_acquire(cfg, s, 10.0)
    assert isinstance(d, Granted)


def test_sliding_not_fixed_window() -> None:
    # A fixed-window limiter would allow 1 at t=9.9 and another at t=10.1; Azure's rolling count not.
    cfg = QuotaConfig(rpm=6, window_s=10)
    d1, s = try_acquire(cfg, QuotaState(), 9.9)
    d2, s = try_acquire(cfg, s, 10.1)
    assert isinstance(d1, Granted)
    assert isinstance(d2, Wait) and d2.until == pytest.approx(19.9)


def test_concurrency_cap_and_release() -> None:
    cfg = QuotaConfig(rpm=600, window_s=1, max_concurrent=2)
    a, s = try_acquire(cfg, QuotaState(), 0.0, lease_id="a")
    b, s = try_acquire(cfg, s, 0.0, lease_id="b")
    c, s = try_acquire(cfg, s, 0.0, lease_id="c")
    assert isinstance(a, Granted) and isinstance(b, Granted)
    assert isinstance(c, Wait) and c.until is None and c.reason == "2/2 concurrent requests"
    assert in_flight(s, 0.0) == 2
    s = release(s, "a")
    assert in_flight(s, 0.0) == 1 and [lease_id for lease_id, _ in s.leases] == ["b"]
    assert isinstance(try_acquire(cfg, s, 0.0, lease_id="c")[0], Granted)
    # finishing a lease twice, or one never granted, gives back nothing that another request holds
    assert release(s, "a") == s and release(s, "nobody") == s
    assert in_flight(release(release(s, "b"), "b"), 0.0) == 0


@pytest.mark.parametrize(
    ("deadline", "grace", "expires"),
    [
        (None, 30.0, 100.0 + 900.0),  # no deadline known: max_lease_s from the grant
        (400.0, 30.0, 430.0),  # the request's deadline plus the grace
        (2000.0, 30.0, 2030.0),  # a deadline beyond max_lease_s wins: healthy requests keep their slot
        (50.0, 30.0, 130.0),  # a deadline already past: the grace from now
        (400.0, 0.0, 400.0),
    ],
)
def test_lease_expiry_table(deadline: float | None, grace: float, expires: float) -> None:
    cfg = QuotaConfig(rpm=600, window_s=1, max_concurrent=1, lease_grace_s=grace)
    g, s = try_acquire(cfg, QuotaState(), 100.0, lease_id="x", deadline=deadline)
    assert isinstance(g, Granted) and g.expires_at == expires and g.lease_id == "x"
    assert s.leases == (("x", expires),)
    assert in_flight(s, expires - 0.001) == 1
    assert in_flight(s, expires) == 0  # an expired lease frees its slot
    # and the next grant, at the expiry, finds the slot free and drops the dead lease
    again, s2 = try_acquire(cfg, s, expires, lease_id="y")
    assert isinstance(again, Granted) and [lease_id for lease_id, _ in s2.leases] == ["y"]
    assert isinstance(try_acquire(cfg, s, expires - 0.001, lease_id="y")[0], Wait)


def test_headroom_counts_only_live_leases() -> None:
    cfg = QuotaConfig(rpm=600, window_s=1, max_concurrent=1)
    _, s = try_acquire(cfg, QuotaState(), 0.0, lease_id="x", deadline=10.0)
    assert headroom(cfg, s, 5.0) == 0.0
    assert headroom(cfg, s, 40.0) == 1.0  # the abandoned lease expired at 10 + 30


def test_lease_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="max_lease_s=0"):
        QuotaConfig(rpm=6, max_lease_s=0)
    with pytest.raises(ValueError, match="lease_grace_s=-1"):
        QuotaConfig(rpm=6, lease_grace_s=-1)


lease_ops = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=50),
        st.sampled_from(["acquire", "acquire", "finish", "finish_twice", "finish_unknown", "abandon"]),
        st.floats(min_value=0, max_value=200),
    ),
    max_size=100,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=4), lease_ops)
def test_invariant_leases_never_exceed_the_cap_and_expire(
    cap: int, seq: list[tuple[float, str, float]]
) -> None:
    """A model of the leases: live ones never exceed the cap; finishing twice or an unknown lease
    frees nothing; an abandoned (never finished) lease stops counting at its expiry, and a slot is
    refused only while ``cap`` live leases hold it."""
    cfg = QuotaConfig(rpm=60_000, window_s=1, max_concurrent=cap, max_lease_s=120)
    s = QuotaState()
    now = 0.0
    model: dict[str, float] = {}  # lease_id -> expires_at, for leases not finished
    finished: list[str] = []
    for k, (dt, op, deadline_in) in enumerate(seq):
        now += dt
        live = {i: e for i, e in model.items() if e > now}
        if op == "acquire":
            deadline = None if deadline_in > 150 else now + deadline_in
            d, s = try_acquire(cfg, s, now, lease_id=f"l{k}", deadline=deadline)
            if len(live) < cap:
                assert isinstance(d, Granted), (live, d)
                model[f"l{k}"] = d.expires_at
                assert d.expires_at > now
            else:
                assert isinstance(d, Wait) and d.until is None
        elif op in ("finish", "finish_twice") and model:
            lease_id = next(iter(model))
            del model[lease_id]
            s = release(s, lease_id)
            finished.append(lease_id)
            if op == "finish_twice":
                assert release(s, lease_id) == s
        elif op == "finish_unknown":
            before = in_flight(s, now)
            s = release(s, finished[-1] if finished else "never-granted")
            assert in_flight(s, now) == before
        # "abandon": the holder went away without finishing; only time frees its slot
        live = {i: e for i, e in model.items() if e > now}
        assert in_flight(s, now) == len(live) <= cap
        assert len(s.leases) <= cap and {i for i, _ in s.leases} <= set(model)  # small, bounded
    # long after every deadline, every slot is free again, finished or not
    later = now + 10_000
    assert in_flight(s, later) == 0
    assert isinstance(try_acquire(cfg, s, later, lease_id="z")[0], Granted)


def test_429_blocks_until_retry_after_and_halves_rate() -> None:
    cfg = QuotaConfig(rpm=60, window_s=10)  # 10 per 10 s
    s = on_throttled(cfg, QuotaState(), 7.0, 100.0)
    d, s = try_acquire(cfg, s, 106.9)
    assert isinstance(d, Wait) and d.until == 107.0
    ds, s = acquire_n(cfg, s, 107.0, 6)
    assert sum(isinstance(d, Granted) for d in ds) == 5  # 30 RPM now: 5 per 10 s


def test_429_without_retry_after_blocks_one_window() -> None:
    cfg = QuotaConfig(rpm=6, window_s=10)
    s = on_throttled(cfg, QuotaState(), None, 0.0)
    d, _ = try_acquire(cfg, s, 0.0)
    assert isinstance(d, Wait)
    assert d.until == 10.0


def test_burst_of_429s_cuts_once_per_window() -> None:
    cfg = QuotaConfig(rpm=60, window_s=10)
    s = QuotaState()
    for t in (0.0, 0.1, 0.2):
        s = on_throttled(cfg, s, 1.0, t)
    assert s.effective_rpm == 30.0
    s = on_throttled(cfg, s, 1.0, 20.0)
    assert s.effective_rpm == 15.0


def test_effective_rate_never_below_floor() -> None:
    cfg = QuotaConfig(rpm=60, window_s=10, min_rpm_fraction=0.25)
    s = QuotaState()
    for i in range(20):
        s = on_throttled(cfg, s, 0.0, i * 100.0)
    assert s.effective_rpm == 15.0


def test_additive_recovery_back_to_configured() -> None:
    cfg = QuotaConfig(rpm=60, window_s=10, recover_after_s=60, increase_fraction=0.1)
    s = on_throttled(cfg, QuotaState(), 0.0, 0.0)  # 30 RPM
    _, s = try_acquire(cfg, s, 59.0)
    assert s.effective_rpm == 30.0
    _, s = try_acquire(cfg, s, 60.0)
    assert s.effective_rpm == pytest.approx(36.0)
    _, s = try_acquire(cfg, s, 185.0)  # two more periods since t=60
    assert s.effective_rpm == pytest.approx(48.0)
    _, s = try_acquire(cfg, s, 1000.0)
    assert s.effective_rpm is None  # back at the configured figure


def test_remaining_zero_blocks_a_window() -> None:
    cfg = QuotaConfig(rpm=600, window_s=1)
    g, s = try_acquire(cfg, QuotaState(), 0.0)
    assert isinstance(g, Granted) and g.used == 1
    s = on_remaining(cfg, s, 0, 0.0, 1)
    d, _ = try_acquire(cfg, s, 0.5)
    assert isinstance(d, Wait) and d.until == 1.0
    assert s.effective_rpm == 60.0  # Azure says 1 used + 0 left = 1 per second


def test_remaining_lower_than_expected_adapts_down_and_negative_is_ignored() -> None:
    cfg = QuotaConfig(rpm=600, window_s=1)  # we believe 10 per second
    ds, s = acquire_n(cfg, QuotaState(), 0.0, 2)
    assert [d.used for d in ds if isinstance(d, Granted)] == [1, 2]
    s2 = on_remaining(cfg, s, 3, 0.0, 2)  # Azure: 2 used, 3 left -> 5 per second
    assert s2.effective_rpm == 300.0
    assert on_remaining(cfg, s, -1, 0.0, 2) is s
    assert on_remaining(cfg, s, 8, 0.0, 2).effective_rpm is None  # consistent with our belief


def test_remaining_is_judged_at_admission_not_at_response() -> None:
    cfg = QuotaConfig(rpm=60, window_s=10)  # 10 per window
    _, s = acquire_n(cfg, QuotaState(), 0.0, 5)
    # Later grants push the t=0 ones out of the log; the response for the 5th arrives at t=30.
    for t in (20.0, 25.0):
        _, s = try_acquire(cfg, s, t)
    late = on_remaining(cfg, s, 5, 0.0, 5)  # 5 used + 5 left = 10: all as configured
    assert late.effective_rpm is None


def test_headroom() -> None:
    cfg = QuotaConfig(rpm=240, window_s=10)  # 40 per window
    _, s = acquire_n(cfg, QuotaState(), 0.0, 10)
    assert headroom(cfg, s, 1.0) == 0.75
    assert headroom(cfg, on_throttled(cfg, s, 5.0, 1.0), 2.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rpm": 6, "window_s": 0}, "window_s"),
        ({"rpm": 6, "max_concurrent": 0}, "max_concurrent"),
        ({"rpm": 6, "decrease_factor": 1.0}, "decrease_factor"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        QuotaConfig(**kwargs)  # type: ignore[arg-type]


ops = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=4),
        st.sampled_from(["acquire", "acquire", "acquire", "release", "429", "remaining"]),
        st.integers(min_value=-1, max_value=5),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([(6, 10), (9, 10), (60, 1), (600, 1), (120, 10)]), st.sampled_from([None, 1, 3]), ops)
def test_invariant_grants_never_exceed_limit_in_any_window(
    quota: tuple[float, float], conc: int | None, seq: list[tuple[float, str, int]]
) -> None:
    rpm, window = quota
    cfg = QuotaConfig(rpm=rpm, window_s=window, max_concurrent=conc, recover_after_s=20)
    s = QuotaState()
    now = 0.0
    grants: list[tuple[float, float | None]] = []  # (time, effective rpm at grant)
    held: list[str] = []
    for k, (dt, op, n) in enumerate(seq):
        now += dt
        if op == "acquire":
            d, s = try_acquire(cfg, s, now, lease_id=str(k))
            if isinstance(d, Granted):
                eff = s.effective_rpm or rpm
                grants.append((now, eff))
                held.append(str(k))
                # sliding check under the limit in force at that grant
                w = effective_window_s(cfg, eff)
                assert sum(1 for g, _ in grants if g + w > now) <= allowance(cfg, eff)
                assert conc is None or len(held) <= conc
            else:
                assert d.until is None or d.until > now
        elif op == "release" and held:
            s = release(s, held.pop(0))
        elif op == "429":
            s = on_throttled(cfg, s, float(max(n, 0)), now)
        elif op == "remaining":
            s = on_remaining(cfg, s, n, now, max(1, len(grants_in_window(cfg, s, now))))
    # and never above the configured quota in any configured window (what Azure enforces)
    times = [g for g, _ in grants]
    allowed = allowance(cfg, rpm)
    span = effective_window_s(cfg, rpm)
    for t in times:
        assert sum(1 for g in times if t <= g < t + span) <= allowed


def test_remaining_zero_that_agrees_with_our_log_does_not_block_past_the_sliding_window() -> None:
    """Filling the window ourselves: the last grant's response says 0 left, which is what our own
    log already knows. Capacity returns when the first grant ages out (t=1.0), not a whole window
    after the last grant (t=1.9): blocking there wasted most of every other window (bench_goodput)."""
    cfg = QuotaConfig(rpm=600, window_s=1)  # 10 per second
    s = QuotaState()
    for i in range(10):
        g, s = try_acquire(cfg, s, i / 10)
        assert isinstance(g, Granted) and g.used == i + 1
    s = on_remaining(cfg, s, 0, 0.9, 10)
    assert s.effective_rpm is None
    early, _ = try_acquire(cfg, s, 0.95)
    assert isinstance(early, Wait) and early.until == pytest.approx(1.0)
    later, _ = try_acquire(cfg, s, 1.0)
    assert isinstance(later, Granted)


def test_429_on_the_last_slot_of_a_full_window_cuts_one_slot_not_half() -> None:
    """Pacing at exactly the quota, a request sent a few ms before Azure's window boundary can
    arrive after it and be counted in the next window: a 429 on the grant that used our window's
    last slot says "Azure's limit is at most ours", not "half of it". Cut one slot per window
    (10 → 9 per second); a 429 while our window still had room keeps the multiplicative cut."""
    cfg = QuotaConfig(rpm=600, window_s=1)  # 10 per second
    edge = on_throttled(cfg, QuotaState(), 1.0, 5.0, used=10)
    assert edge.effective_rpm == pytest.approx(540.0)
    assert edge.blocked_until == 6.0
    ds, _ = acquire_n(cfg, edge, 6.0, 10)
    assert sum(isinstance(d, Granted) for d in ds) == 9
    inside = on_throttled(cfg, QuotaState(), 1.0, 5.0, used=6)
    assert inside.effective_rpm == 300.0
    assert on_throttled(cfg, QuotaState(), 1.0, 5.0).effective_rpm == 300.0  # unknown: as before
    single = QuotaConfig(rpm=6, window_s=10)  # one per window: no slot to give up but the last
    assert on_throttled(single, QuotaState(), 10.0, 0.0, used=1).effective_rpm == 3.0

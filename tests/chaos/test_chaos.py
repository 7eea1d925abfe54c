"""Chaos: scripted emulator faults while requests flow, in virtual time (looptime, so minutes of
traffic run in seconds). While a healthy deployment has capacity no client request may fail, and
every image the emulator billed must be on a result (or on an attempt that says it may have been
billed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from chaos.support import chaos

pytestmark = [pytest.mark.looptime, pytest.mark.timeout(60)]


async def test_region_outage_mid_run(tmp_path: Path) -> None:
    c = await chaos(tmp_path)
    down = False

    async def during(t: float) -> None:
        nonlocal down
        if t >= 20 and not down:
            await c.faults("g1-east", {"kind": "outage", "mode": "refuse"})
            down = True

    async with c.gate:
        run = await c.drive(40, every_s=1.0, during=during)
    assert down and not run.errors and len(run.results) == 40
    served = Counter(r.deployment for r in run.results)
    assert served["g1-swc"] > 0 and served["g1-east"] > 0  # east served before the outage
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()


async def test_429_storm(tmp_path: Path) -> None:
    c = await chaos(tmp_path)
    await c.faults("g1-east", {"kind": "status", "status": 429, "retry_after_s": 10, "duration_s": 40})
    await c.faults("g1-swc", {"kind": "status", "status": 429, "retry_after_s": 5, "duration_s": 15})
    async with c.gate:
        run = await c.drive(30, every_s=1.0)
    assert not run.errors and len(run.results) == 30
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()


async def test_hangs_with_client_timeouts(tmp_path: Path) -> None:
    # a hang before the model runs bills nothing; the gateway resends timed-out attempts
    c = await chaos(tmp_path, retry="{max_attempts: 4, retry_sent_timeouts: true}", read_s=20.0)
    await c.faults("g1-east", {"kind": "hang", "phase": "before", "delay_s": 300, "probability": 0.5})
    async with c.gate:
        run = await c.drive(20, every_s=2.0)
    assert not run.errors and len(run.results) == 20
    timeouts = [a for a in run.attempts if a.outcome == "upstream_timeout"]
    assert timeouts and all(a.deployment == "g1-east" and a.may_be_billed for a in timeouts)
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()


async def test_5xx_bursts(tmp_path: Path) -> None:
    c = await chaos(tmp_path)
    await c.faults("g1-east", {"kind": "status", "status": 500, "count": 6})
    await c.faults("g1-swc", {"kind": "status", "status": 503, "count": 3, "start_s": 5})
    async with c.gate:
        run = await c.drive(30, every_s=1.0)
    assert not run.errors and len(run.results) == 30
    statuses = Counter(a.status_code for a in run.attempts if a.outcome != "ok")
    fired = {name: sum(c["faults_fired"].values()) for name, c in (await c.counters()).items()}
    # every scripted 5xx the emulator sent shows up as an attempt (the breaker may spare some)
    assert statuses[500] == fired["g1-east"] >= 4 and statuses[503] == fired["g1-swc"] >= 1
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()


async def test_whole_model_down_falls_back_to_the_cheap_model(tmp_path: Path) -> None:
    c = await chaos(tmp_path)
    await c.faults("g1-east", {"kind": "outage", "mode": "503"})
    await c.faults("g1-swc", {"kind": "outage", "mode": "refuse"})
    async with c.gate:
        run = await c.drive(20, every_s=1.0)
    assert not run.errors and len(run.results) == 20
    assert Counter(r.deployment for r in run.results)["mini"] >= 15
    assert all(r.fallback_from == "gpt-image-1" for r in run.results if r.deployment == "mini")
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()


async def test_malformed_bodies_fail_only_those_requests_and_are_flagged(tmp_path: Path) -> None:
    # a truncated 200 was generated and billed: resending could bill twice, so that request fails,
    # and its attempt says it may have been billed
    c = await chaos(tmp_path)
    await c.faults("g1-east", {"kind": "malformed_json", "count": 3})
    async with c.gate:
        run = await c.drive(20, every_s=1.0)
    assert len(run.errors) == 3 and len(run.results) == 17
    for error in run.errors:
        (last,) = error.attempts[-1:]
        assert last.deployment == "g1-east" and last.status_code == 200 and last.may_be_billed
    billed = (await c.counters())["g1-east"]["images_billed"]
    assert billed == sum(1 for r in run.results for i in r.images if i.deployment == "g1-east") + 3
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()


async def test_configured_quota_too_high(tmp_path: Path) -> None:
    # the config claims 10x the real rpm, and the load (150 rpm) is more than the real quota of
    # one deployment: the gateway must learn the real figure and spread the load
    c = await chaos(tmp_path, configured_rpm=600, concurrency=40, emulator_concurrency=40)
    async with c.gate:
        run = await c.drive(60, every_s=0.4)
        learnt = {v.name: v.effective_rpm for v in await c.gate.scheduler.snapshot()}
    assert not run.errors and len(run.results) == 60
    # x-ratelimit-remaining-requests taught the gateway the real quota (60) before 429s piled up
    assert learnt["g1-east"] == learnt["g1-swc"] == 60.0
    limited = [a for a in run.attempts if a.status_code == 429]
    assert len(limited) <= 4
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()


async def test_capacity_storm_with_a_deadline_falls_back_in_time(tmp_path: Path) -> None:
    # both gpt-image-1 regions answer 429 "retry after 60 s": waiting would miss the 30 s deadline,
    # so requests move to gpt-image-1-mini and still finish before their deadline
    c = await chaos(tmp_path)
    for name in ("g1-east", "g1-swc"):
        await c.faults(name, {"kind": "status", "status": 429, "retry_after_s": 60})
    async with c.gate:
        run = await c.drive(15, every_s=2.0, deadline_s=30)
    assert not run.errors and len(run.results) == 15
    assert {r.deployment for r in run.results} == {"mini"}
    assert all(1 < r.latency_s <= 30 for r in run.results)  # virtual seconds: a mini image takes ~4
    await c.assert_every_billed_image_accounted(run)
    await c.http.aclose()

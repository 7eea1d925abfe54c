"""Failover: after one deployment goes down mid-run, how long and how many failed attempts until
no request goes to it, and what clients see; imagegate against the openai SDK round-robin.

Set-up (``rig.py``): the three deployments of ``bench_goodput.py`` (600/600/300 RPM over 1 s
windows, 4/4/2 concurrent, latency median 0.25 s) in the emulator under uvicorn on 127.0.0.1.
Offered load: Poisson at 10 requests/s (40 % of capacity, so the two survivors can carry it) for
12 s. At t = 3 s the admin API puts ``img-eastus2`` (imagegate's first choice) into an outage,
once as ``refuse`` (connection dropped without a response) and once as ``503``.

* ``imagegate``: ``AsyncImageGate`` over a real-socket ``httpx.AsyncClient`` whose transport logs
  every attempt's start time and deployment; ``status()`` is polled every 20 ms to see when the
  dead deployment's breaker leaves ``closed``. Detection = that moment minus the outage start;
  failed attempts before it, and the half-open probes after it, are counted from the log.
* ``imagegate (retry_sent_timeouts: true)``, ``refuse`` only: ``refuse`` drops the connection
  after the request was sent, which imagegate treats as "may have been billed" and by default
  does not resend (so the few requests caught before detection fail); this opt-in resends them.
* ``openai SDK``: ``AsyncAzureOpenAI`` (default retries), deployments round-robin per request; it
  has no notion of a dead deployment, so it never "detects": its attempts to the dead deployment
  are counted over the whole outage (emulator counters).

Targets (issue 4): detection within 2 s or 3 attempts; zero client-visible failures while healthy
capacity remains.

    .venv/bin/python bench/bench_failover.py
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from imagegate import AsyncImageGate, ImageGateError
from rig import (
    API_VERSION,
    DEPS,
    KEY,
    PROMPT,
    EmulatorProcess,
    Outcome,
    emulator_yaml,
    gateway_config,
    offered_load,
)

DEAD = DEPS[0].name
RATE, DURATION_S, OUTAGE_AT_S = 10.0, 12.0, 3.0


class LoggingTransport(httpx.AsyncHTTPTransport):
    """Records (monotonic time, deployment) for every request it sends."""

    def __init__(self, log: list[tuple[float, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")
        if "deployments" in parts:
            self.log.append((time.monotonic(), parts[parts.index("deployments") + 1]))
        return await super().handle_async_request(request)


@dataclass
class Result:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    dead_attempts_total: int = 0
    dead_attempts_before_detection: int | None = None
    detection_s: float | None = None
    probes_after_detection: int | None = None
    last_dead_attempt_s: float | None = None


async def outage_after(emu: EmulatorProcess, admin: httpx.AsyncClient, mode: str, t0: float) -> float:
    await asyncio.sleep(t0 + OUTAGE_AT_S - time.monotonic())
    fault = [{"kind": "outage", "mode": mode}]
    (await admin.put(f"{emu.base_url}/_emulator/deployments/{DEAD}/faults", json=fault)).raise_for_status()
    return time.monotonic()


async def run_imagegate(
    emu: EmulatorProcess, admin: httpx.AsyncClient, mode: str, *, resend: bool = False
) -> Result:
    log: list[tuple[float, str]] = []
    cfg = gateway_config(emu.base_url, DEPS, deadline_s=10.0, retry_sent_timeouts=resend)
    http = httpx.AsyncClient(transport=LoggingTransport(log, limits=httpx.Limits(max_connections=100)))
    res = Result(f"imagegate{' (retry_sent_timeouts: true)' if resend else ''}, outage {mode}")
    t0 = time.monotonic()
    opened_at: list[float] = []

    async with AsyncImageGate(cfg, http_client=http) as gate:

        async def watch() -> None:
            while not opened_at:
                views = {v.name: v for v in await gate.status()}
                if views[DEAD].breaker != "closed":
                    opened_at.append(time.monotonic())
                await asyncio.sleep(0.02)

        async def call(i: int) -> Outcome:
            offered = time.monotonic() - t0
            try:
                r = await gate.generate(PROMPT, quality="low", size="1024x1024")
            except ImageGateError as exc:
                return Outcome(offered, time.monotonic() - t0, type(exc).__name__, detail=exc.message[:100])
            return Outcome(offered, time.monotonic() - t0, "ok", r.deployment)

        watcher = asyncio.create_task(watch())
        outage = asyncio.create_task(outage_after(emu, admin, mode, t0))
        run = await offered_load(call, rate_per_s=RATE, duration_s=DURATION_S)
        started = await outage
        watcher.cancel()
    await http.aclose()
    res.outcomes = run.outcomes
    dead = [t for t, d in log if d == DEAD and t >= started]
    res.dead_attempts_total = len(dead)
    res.last_dead_attempt_s = (dead[-1] - started) if dead else None
    if opened_at:
        res.detection_s = opened_at[0] - started
        res.dead_attempts_before_detection = sum(1 for t in dead if t <= opened_at[0])
        res.probes_after_detection = sum(1 for t in dead if t > opened_at[0])
    return res


async def run_sdk(emu: EmulatorProcess, admin: httpx.AsyncClient, mode: str) -> Result:
    client = openai.AsyncAzureOpenAI(azure_endpoint=emu.base_url, api_key=KEY, api_version=API_VERSION)
    res = Result(f"openai SDK round-robin, outage {mode}")
    t0 = time.monotonic()

    async def call(i: int) -> Outcome:
        dep = DEPS[i % len(DEPS)].name
        offered = time.monotonic() - t0
        try:
            await client.images.generate(model=dep, prompt=PROMPT, quality="low", size="1024x1024")
        except openai.APIError as exc:
            return Outcome(offered, time.monotonic() - t0, type(exc).__name__, dep)
        return Outcome(offered, time.monotonic() - t0, "ok", dep)

    before = (await admin.get(f"{emu.base_url}/_emulator/deployments/{DEAD}")).json()["counters"]
    outage = asyncio.create_task(outage_after(emu, admin, mode, t0))
    run = await offered_load(call, rate_per_s=RATE, duration_s=DURATION_S)
    await outage
    after = (await admin.get(f"{emu.base_url}/_emulator/deployments/{DEAD}")).json()["counters"]
    await client.close()
    res.outcomes = run.outcomes
    # attempts the dead deployment saw during the outage (the counters before the outage include
    # a few in-flight ones; the difference of totals after/before the fault is exact enough)
    res.dead_attempts_total = after["requests"]["total"] - before["requests"]["total"]
    return res


def show(r: Result) -> None:
    failures: dict[str, int] = {}
    for o in r.outcomes:
        if o.kind != "ok":
            failures[o.kind] = failures.get(o.kind, 0) + 1
    ok = sum(1 for o in r.outcomes if o.kind == "ok")
    print(f"\n== {r.name}")
    print(
        f"  requests {len(r.outcomes)}, ok {ok},"
        f" client-visible failures {sum(failures.values())} {failures or ''}"
    )
    if r.detection_s is not None:
        print(
            f"  detection (breaker left closed) {r.detection_s:.2f} s after the outage began,"
            f" after {r.dead_attempts_before_detection} failed attempt(s)   (target ≤ 2 s or ≤ 3 attempts)"
        )
        print(f"  attempts to the dead deployment afterwards (half-open probes): {r.probes_after_detection}")
    else:
        print("  never detected: requests keep going to the dead deployment")
    print(f"  attempts to the dead deployment during the outage: {r.dead_attempts_total}")


async def main() -> None:
    print(
        f"3 deployments {[(d.rpm, d.window_s, d.concurrency) for d in DEPS]} (rpm, window s, concurrency); "
        f"offered {RATE:g}/s for {DURATION_S:g} s; {DEAD} down from t={OUTAGE_AT_S:g} s"
    )
    results: list[Result] = []
    with EmulatorProcess(emulator_yaml(DEPS, median_s=0.25, p95_s=0.4)) as emu:
        async with httpx.AsyncClient() as admin:
            for mode in ("refuse", "503"):
                for runner in (run_imagegate, run_sdk):
                    await emu.reset(admin)
                    await asyncio.sleep(1.1)
                    results.append(await runner(emu, admin, mode))
            # A dropped connection after the request was sent may have been billed, so imagegate
            # does not resend it by default; the opt-in shows what resending buys.
            await emu.reset(admin)
            await asyncio.sleep(1.1)
            resent = await run_imagegate(emu, admin, "refuse", resend=True)
    for r in [*results, resent]:
        show(r)
    print("\n== ratios (imagegate / SDK), client-visible failures and attempts to the dead deployment")
    for i in range(0, len(results), 2):
        ours, sdk = results[i], results[i + 1]
        f_ours = sum(1 for o in ours.outcomes if o.kind != "ok")
        f_sdk = sum(1 for o in sdk.outcomes if o.kind != "ok")
        print(
            f"  {ours.name.split(', ')[1]}: failures {f_ours} vs {f_sdk};"
            f" dead attempts {ours.dead_attempts_total} vs {sdk.dead_attempts_total}"
            f" ({ours.dead_attempts_total / max(sdk.dead_attempts_total, 1):.2f}x)"
        )


if __name__ == "__main__":
    asyncio.run(main())

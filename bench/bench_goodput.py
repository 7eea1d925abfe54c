"""Goodput under overload: how much of the aggregate Azure quota turns into delivered images when
clients offer twice what the deployments can take, with imagegate's routing against the official
``openai`` SDK spread round-robin over the same deployments.

Set-up (see ``rig.py`` for the scaling): three gpt-image-1 deployments in the emulator (its own
process, uvicorn on 127.0.0.1), 600/600/300 RPM judged over 1 s windows (10/10/5 requests per
window: the 60/60/30 RPM over 10 s windows of the issue, with time ÷10) and 4/4/2 concurrent
requests, latency lognormal (median 0.25 s, p95 0.4 s), small images. Aggregate capacity: 25
requests/s. Offered load: Poisson, 50 requests/s for 20 s, the same seeded arrival times for both
clients.

* ``imagegate``: ``AsyncImageGate`` in this process over a real-socket ``httpx.AsyncClient``,
  configured with the deployments' true quotas, a logical model over the three, and a request
  deadline of 10 s (ten windows): a request the queue cannot start in time is refused at once
  with 429 + an honest ``retry-after`` ("shed"), which is the answer a client whose deadline
  does not allow waiting should get. In process rather than behind ``imagegate serve`` because
  this measures routing (pacing, fair waiting, quota learning), which is the same code on both
  faces; the HTTP face's own overhead is ``bench_gateway.py``'s subject.
* ``openai SDK``: ``AsyncAzureOpenAI`` (default ``max_retries=2``, honours ``retry-after``), one
  client, deployments taken round-robin per request.

Printed from one run, per client: images delivered within the 20 s as a share of the aggregate
quota for 20 s (the target is ≥ 95 %), upstream 429s as a share of upstream attempts (target
≤ 1 %), client errors other than sheds (target 0), sheds, p50/p95 latency and, for imagegate, the
time spent queueing; then the ratios between the two.

    .venv/bin/python bench/bench_goodput.py [--duration 20] [--rate-factor 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
import openai

from imagegate import AsyncImageGate, ImageGateError, RateLimited
from rig import (
    API_VERSION,
    DEPS,
    KEY,
    PROMPT,
    EmulatorProcess,
    Outcome,
    Run,
    emulator_yaml,
    gateway_config,
    offered_load,
    pct,
    status_total,
)

MEDIAN_S, P95_S = 0.25, 0.4
DEADLINE_S = 10.0


def capacity_per_s() -> float:
    return sum(max(1, d.rpm * d.window_s // 60) / d.window_s for d in DEPS)


async def run_imagegate(emu: EmulatorProcess, rate: float, duration: float) -> Run:
    cfg = gateway_config(emu.base_url, DEPS, deadline_s=DEADLINE_S)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=100))
    t0 = time.monotonic()

    async with AsyncImageGate(cfg, http_client=http) as gate:

        async def call(i: int) -> Outcome:
            offered = time.monotonic() - t0
            try:
                r = await gate.generate(PROMPT, quality="low", size="1024x1024")
            except ImageGateError as exc:
                ended = time.monotonic() - t0
                kind = type(exc).__name__
                if isinstance(exc, RateLimited) and not exc.attempts:
                    kind = "shed"  # refused at once: its deadline does not allow the wait
                return Outcome(offered, ended, kind, detail=exc.message[:120])
            ended = time.monotonic() - t0
            upstream = sum(a.latency_s for a in r.attempts)
            return Outcome(offered, ended, "ok", r.deployment, wait_s=(ended - offered) - upstream)

        run = await offered_load(call, rate_per_s=rate, duration_s=duration)
    await http.aclose()
    return run


async def run_sdk(emu: EmulatorProcess, rate: float, duration: float) -> Run:
    client = openai.AsyncAzureOpenAI(azure_endpoint=emu.base_url, api_key=KEY, api_version=API_VERSION)
    t0 = time.monotonic()

    async def call(i: int) -> Outcome:
        dep = DEPS[i % len(DEPS)].name
        offered = time.monotonic() - t0
        try:
            await client.images.generate(model=dep, prompt=PROMPT, quality="low", size="1024x1024")
        except openai.APIError as exc:
            return Outcome(offered, time.monotonic() - t0, type(exc).__name__, detail=str(exc)[:120])
        return Outcome(offered, time.monotonic() - t0, "ok", dep)

    run = await offered_load(call, rate_per_s=rate, duration_s=duration)
    await client.close()
    return run


def summarize(name: str, run: Run, counters: dict[str, dict[str, int]]) -> dict[str, Any]:
    ok = [o for o in run.outcomes if o.kind == "ok"]
    in_window = sum(1 for o in ok if o.ended_at <= run.duration_s)
    quota = capacity_per_s() * run.duration_s
    attempts = status_total(counters)
    throttled = status_total(counters, "429")
    errors: dict[str, int] = {}
    for o in run.outcomes:
        if o.kind not in ("ok", "shed"):
            errors[o.kind] = errors.get(o.kind, 0) + 1
    latencies = [o.ended_at - o.offered_at for o in ok]
    waits = [o.wait_s for o in ok if o.wait_s is not None]
    return {
        "name": name,
        "offered": len(run.outcomes),
        "ok": len(ok),
        "ok_in_window": in_window,
        "goodput": in_window / quota,
        "attempts": attempts,
        "upstream_429": throttled,
        "share_429": throttled / attempts if attempts else 0.0,
        "errors": errors,
        "shed": run.count("shed"),
        "p50": pct(latencies, 0.5),
        "p95": pct(latencies, 0.95),
        "wait_p50": pct(waits, 0.5) if waits else None,
        "wait_p95": pct(waits, 0.95) if waits else None,
        "per_deployment": {k: v.get("200", 0) for k, v in counters.items()},
    }


def show(s: dict[str, Any], quota: float) -> None:
    errors = sum(s["errors"].values())
    print(f"\n== {s['name']}")
    print(f"  offered requests            {s['offered']}")
    print(
        f"  images within the run       {s['ok_in_window']} of a quota of {quota:.0f}"
        f"  → goodput {s['goodput']:.1%}   (target ≥ 95%)"
    )
    print(f"  images in total (drained)   {s['ok']}   per deployment {s['per_deployment']}")
    print(
        f"  upstream attempts           {s['attempts']}, of which 429: {s['upstream_429']}"
        f" = {s['share_429']:.1%}   (target ≤ 1%)"
    )
    print(f"  client errors               {errors} {s['errors'] or ''}  (target 0)")
    print(f"  shed at once (429, deadline {DEADLINE_S:g} s cannot be met)  {s['shed']}")
    print(f"  latency of successes        p50 {s['p50']:.2f} s   p95 {s['p95']:.2f} s")
    if s["wait_p50"] is not None:
        print(f"  of which queueing           p50 {s['wait_p50']:.2f} s   p95 {s['wait_p95']:.2f} s")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of offered load")
    ap.add_argument("--rate-factor", type=float, default=2.0, help="offered load / aggregate capacity")
    args = ap.parse_args()
    rate = capacity_per_s() * args.rate_factor
    quota = capacity_per_s() * args.duration
    print(
        f"3 deployments {[(d.rpm, d.window_s, d.concurrency) for d in DEPS]} (rpm, window s, concurrency); "
        f"capacity {capacity_per_s():g}/s; offered {rate:g}/s for {args.duration:g} s"
    )
    with EmulatorProcess(emulator_yaml(DEPS, median_s=MEDIAN_S, p95_s=P95_S)) as emu:
        async with httpx.AsyncClient() as admin:
            results = []
            for name, runner in (("imagegate", run_imagegate), ("openai SDK round-robin", run_sdk)):
                await emu.reset(admin)
                await asyncio.sleep(1.1)  # let the previous phase's windows roll
                run = await runner(emu, rate, args.duration)
                results.append(summarize(name, run, await emu.counters(admin)))
    for s in results:
        show(s, quota)
    ours, sdk = results
    print("\n== ratios (imagegate / SDK)")
    print(f"  goodput                     {ours['goodput'] / max(sdk['goodput'], 1e-9):.2f}x")
    print(f"  upstream attempts           {ours['attempts'] / max(sdk['attempts'], 1):.2f}x")
    print(f"  upstream 429s               {ours['upstream_429']}  vs  {sdk['upstream_429']}")
    print(
        f"  client-visible failures     {sum(ours['errors'].values()) + ours['shed']}"
        f"  vs  {sum(sdk['errors'].values()) + sdk['shed']}"
    )


if __name__ == "__main__":
    asyncio.run(main())

"""Shared rig for the routing benchmarks (``bench_goodput.py``, ``bench_failover.py``).

* the emulator runs in its own process (``imagegate emulator``) under uvicorn on 127.0.0.1, so
  both clients under test (imagegate's library face and the official ``openai`` SDK, which uses
  httpx2 and cannot take an in-process ASGI app) reach it over the same real sockets;
* the emulator's admin API resets it between phases, scripts faults and reports per-deployment
  counters (what Azure would have seen: attempts, 200s, 429s);
* open-loop offered load: Poisson arrivals at a fixed rate for a fixed duration (seeded), each
  arrival one request task, so a slow client cannot slow the offered load down.

Scaling. Azure judges an RPM quota over 1 s or 10 s windows (reference §8.1: "a 600 RPM
deployment is limited if more than 10 requests arrive in one 1-second period"). The benchmarks run
in real time but use the 1 s window form with RPMs ×10 (60/60/30 RPM over 10 s windows becomes
600/600/300 RPM over 1 s windows: the same 10/10/5 requests per window) and latencies ÷10
(~0.25 s instead of ~2.5 s), so 20 s of wall time holds 20 quota windows. Nothing is faked: the
emulator enforces the windows and the concurrency, and its ``retry-after`` is honest (whole
seconds, at least 1).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

API_VERSION = "2025-04-01-preview"
KEY = "emulator-key"
PROMPT = "a lighthouse in a storm, benchmark"


@dataclass(frozen=True)
class Dep:
    name: str
    rpm: int
    window_s: int
    concurrency: int
    region: str = "eastus2"
    model: str = "gpt-image-1"


# The three deployments both routing benchmarks load: the 60/60/30 RPM over 10 s windows
# with time divided by 10 (600/600/300 RPM over 1 s windows), so a 20 s run holds 20 windows.
DEPS = (
    Dep("img-eastus2", rpm=600, window_s=1, concurrency=4, region="eastus2"),
    Dep("img-swedencentral", rpm=600, window_s=1, concurrency=4, region="swedencentral"),
    Dep("img-westus3", rpm=300, window_s=1, concurrency=2, region="westus3"),
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def emulator_yaml(deps: Sequence[Dep], *, median_s: float, p95_s: float) -> dict[str, Any]:
    return {
        "time_scale": 1.0,
        "seed": 7,
        "deployments": [
            {
                "name": d.name,
                "model": d.model,
                "region": d.region,
                "rpm": d.rpm,
                "window_s": d.window_s,
                "concurrency": d.concurrency,
                "image_bytes": "small",
                "latency": {"median_s": median_s, "p95_s": p95_s, "distribution": "lognormal"},
            }
            for d in deps
        ],
    }


class EmulatorProcess:
    """``imagegate emulator --config … --port …`` as a child process."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="imagegate-bench-")
        self.config_path = Path(self._dir.name) / "emulator.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EmulatorProcess:
        exe = Path(sys.executable).with_name("imagegate")
        cmd = [str(exe), "emulator", "--config", str(self.config_path), "--port", str(self.port)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base_url}/_emulator/deployments", timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the emulator did not come up")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        self._dir.cleanup()

    async def reset(self, http: httpx.AsyncClient) -> None:
        for d in (await http.get(f"{self.base_url}/_emulator/deployments")).json()["deployments"]:
            await http.put(f"{self.base_url}/_emulator/deployments/{d['name']}/faults", json=[])
        (await http.post(f"{self.base_url}/_emulator/reset")).raise_for_status()

    async def counters(self, http: httpx.AsyncClient) -> dict[str, dict[str, int]]:
        """Per deployment: requests by status (``none`` = connection dropped, no response)."""
        body = (await http.get(f"{self.base_url}/_emulator/deployments")).json()
        return {d["name"]: dict(d["counters"]["requests"]["by_status"]) for d in body["deployments"]}


def gateway_config(
    endpoint: str,
    deps: Sequence[Dep],
    *,
    deadline_s: float,
    rpm_factor: float = 1.0,
    retry_sent_timeouts: bool = False,
) -> Any:
    """An ``ImageGateConfig`` for the same deployments (quotas as configured in Azure, times
    ``rpm_factor`` to model a wrongly configured quota)."""
    from imagegate.config_load import load

    raw = {
        "deployments": [
            {
                "name": d.name,
                "endpoint": endpoint,
                "model": d.model,
                "region": d.region,
                "api_key": KEY,
                "api_version": API_VERSION,
                "rpm": round(d.rpm * rpm_factor),
                "rpm_window_s": d.window_s,
                "concurrency": d.concurrency,
            }
            for d in deps
        ],
        "models": {"default": [d.name for d in deps]},
        "retry": {"deadline_s": deadline_s, "retry_sent_timeouts": retry_sent_timeouts},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "imagegate.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load(path, {})


@dataclass
class Outcome:
    """One client request: when it was offered and ended (seconds since the run began), and how."""

    offered_at: float
    ended_at: float
    kind: str  # "ok" or an error class name
    deployment: str | None = None
    wait_s: float | None = None  # time spent waiting (not in an upstream attempt), when known
    first_deployment: str | None = None  # where its first attempt went, when known
    detail: str = ""


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    duration_s: float = 0.0

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)


async def offered_load(
    call: Callable[[int], Awaitable[Outcome]], *, rate_per_s: float, duration_s: float, seed: int = 1
) -> Run:
    """Open loop: Poisson arrivals at ``rate_per_s`` for ``duration_s``; waits for every request."""
    rng = random.Random(seed)
    tasks: list[asyncio.Task[Outcome]] = []
    start = time.monotonic()
    t = 0.0
    i = 0
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= duration_s:
            break
        delay = start + t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(i)))
        i += 1
    outcomes = list(await asyncio.gather(*tasks))
    return Run(outcomes=outcomes, duration_s=duration_s)


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def status_total(counters: dict[str, dict[str, int]], status: str | None = None) -> int:
    return sum(n for by in counters.values() for s, n in by.items() if status is None or s == status)

"""How fast the emulator answers at time scale 0, so it is never the bottleneck of a gateway
benchmark: requests/s and MB/s for repeated (cached) and unique 1024x1024 gpt-image requests,
in process (httpx.ASGITransport) and over loopback (uvicorn in a child process), with the ratios
between them, all measured in this run.

    .venv/bin/python bench/bench_emulator.py [--requests 200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from imagegate.emulator import DeploymentSpec, EmulatorConfig, create_emulator_app
from imagegate.emulator.serve import free_port

URL = "/openai/deployments/bench/images/generations?api-version=2025-04-01-preview"
HEADERS = {"api-key": "emulator-key"}
CONFIG_YAML = """
time_scale: 0
cache_mb: 1024
deployments:
  - {name: bench, model: gpt-image-1, rpm: 100000000, window_s: 1, concurrency: 256}
"""


def bench_config() -> EmulatorConfig:
    dep = DeploymentSpec(name="bench", model="gpt-image-1", rpm=100_000_000, window_s=1, concurrency=256)
    return EmulatorConfig(deployments=(dep,), time_scale=0, cache_mb=1024)


async def run(
    client: httpx.AsyncClient, n: int, concurrency: int, *, unique: bool, tag: str
) -> tuple[float, float]:
    """(requests/s, MB/s) for n requests, ``concurrency`` at a time."""
    counter = iter(range(n))
    total_bytes = 0

    async def worker() -> None:
        nonlocal total_bytes
        for i in counter:
            prompt = f"{tag} unique prompt number {i}" if unique else f"{tag} the same prompt every time"
            r = await client.post(URL, headers=HEADERS, json={"prompt": prompt, "size": "1024x1024"})
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
            total_bytes += len(r.content)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return n / elapsed, total_bytes / elapsed / 1e6


async def in_process(n: int, concurrency: int, unique: bool, tag: str) -> tuple[float, float]:
    app = create_emulator_app(bench_config())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emulator"
    ) as client:
        if not unique:
            await run(client, 1, 1, unique=False, tag=tag)  # warm the cache
        return await run(client, n, concurrency, unique=unique, tag=tag)


async def loopback(base_url: str, n: int, concurrency: int, unique: bool, tag: str) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        if not unique:
            await run(client, 1, 1, unique=False, tag=tag)
        return await run(client, n, concurrency, unique=unique, tag=tag)


def start_server(config_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "imagegate", "emulator", "--config", str(config_path), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/_emulator/deployments", timeout=1)
            return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("emulator did not start")


def median_of(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, conc = args.requests, args.concurrency
    results: dict[tuple[str, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "bench.yaml"
        config_path.write_text(CONFIG_YAML, encoding="utf-8")
        proc, base = start_server(config_path)
        try:
            for kind, unique in (("repeated", False), ("unique", True)):
                runs_in = [asyncio.run(in_process(n, conc, unique, f"in{r}")) for r in range(args.rounds)]
                runs_lo = [asyncio.run(loopback(base, n, conc, unique, f"lo{r}")) for r in range(args.rounds)]
                results[("in-process", kind)] = median_of(runs_in)
                results[("loopback", kind)] = median_of(runs_lo)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(
        f"emulator throughput, 1024x1024 gpt-image-1 PNG (~1.6 MB), time scale 0, {n} requests x "
        f"{args.rounds} rounds (median), concurrency {conc}"
    )
    print(f"  {'mode':<12} {'requests':<9} {'req/s':>9} {'MB/s':>9}")
    for (mode, kind), (rps, mbps) in results.items():
        print(f"  {mode:<12} {kind:<9} {rps:>9.1f} {mbps:>9.1f}")
    for mode in ("in-process", "loopback"):
        rep, uni = results[(mode, "repeated")][0], results[(mode, "unique")][0]
        print(f"  {mode}: repeated/unique = {rep / uni:.1f}x")
    for kind in ("repeated", "unique"):
        ratio = results[("loopback", kind)][0] / results[("in-process", kind)][0]
        print(f"  {kind}: loopback/in-process = {ratio:.2f}")


if __name__ == "__main__":
    main()

"""How fast the emulator answers at time scale 0, so it is never the bottleneck of a gateway
benchmark: requests/s and MB/s for repeated (cached) and unique 1024x1024 gpt-image requests,
in process (httpx.ASGITransport) and over loopback (uvicorn in a child process), with the ratios
between them, and loopback against a baseline uvicorn app that only returns the same bytes (the
ceiling for any Python server on this box), all measured in this run.

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


# The baseline: the fastest a Python ASGI server on this box can hand the same bytes to the same
# client (a static body, no work at all), measured in the same run.
STATIC_SERVER = """
import sys, uvicorn
body = open(sys.argv[1], "rb").read()
headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", lifespan="off")
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


def start_server(cmd: list[str], port: int) -> tuple[subprocess.Popen[bytes], str]:
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
    raise RuntimeError(f"server did not start: {cmd}")


def emulator_cmd(config_path: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "imagegate", "emulator", "--config", str(config_path), "--port", str(port)]


async def sample_body() -> bytes:
    app = create_emulator_app(bench_config())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emulator"
    ) as client:
        r = await client.post(URL, headers=HEADERS, json={"prompt": "baseline body", "size": "1024x1024"})
        return r.content


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
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(asyncio.run(sample_body()))
        port, static_port = free_port(), free_port()
        emulator, base = start_server(emulator_cmd(config_path, port), port)
        static_cmd = [sys.executable, "-c", STATIC_SERVER, str(body_path), str(static_port)]
        static, static_base = start_server(static_cmd, static_port)
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        try:
            # Interleaved rounds, so load from other processes drifts over all modes alike.
            for r in range(args.rounds):
                for kind, unique in (("repeated", False), ("unique", True)):
                    runs.setdefault(("in-process", kind), []).append(
                        asyncio.run(in_process(n, conc, unique, f"in{r}"))
                    )
                    runs.setdefault(("loopback", kind), []).append(
                        asyncio.run(loopback(base, n, conc, unique, f"lo{r}"))
                    )
                runs.setdefault(("loopback", "static"), []).append(
                    asyncio.run(loopback(static_base, n, conc, False, "static"))
                )
        finally:
            for proc in (emulator, static):
                proc.terminate()
                proc.wait(timeout=10)
        results = {key: median_of(values) for key, values in sorted(runs.items())}
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
    static = results[("loopback", "static")][0]
    for kind in ("repeated", "unique"):
        ratio = results[("loopback", kind)][0] / static
        print(f"  loopback {kind} / static-bytes baseline = {ratio:.2f}")


if __name__ == "__main__":
    main()

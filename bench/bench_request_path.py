"""CPU per request of the gateway's request path in process, without sockets.

``bench_gateway.py`` measures the whole gateway over loopback sockets, where the kernel's copies
and the event loop's reads and writes are a large part of the figure and run-to-run noise is
±10 %. This isolates the Python the gateway runs per image request: the ASGI app (FastAPI,
middleware, governance, the pipeline, routing, the upstream client over ``httpx``, the body
parse, the sliced response, metrics, the access log, the in-memory ledger) with the upstream
answered by ``httpx.MockTransport`` from a prepared, realistic 2.2 MB body (one emulator image).

Two targets, the same request, 16 at a time, on uvloop, CPU time (``time.process_time``):

* ``gateway``   ``create_app`` over the mock upstream, driven as raw ASGI
* ``floor``     a bare FastAPI app whose one route parses the same JSON request and answers
                with the same body in the same slices (``SlicedResponse``): what any gateway
                built on FastAPI pays before doing anything of its own

    .venv/bin/python bench/bench_request_path.py [--requests N] [--instructions]

Printed: CPU ms per request of each, what the gateway adds over the floor, and the ratio.
Sockets, the kernel and uvicorn's parsing are not in either figure (``bench_gateway.py`` has them).

``--instructions`` counts instead of timing: each target runs under valgrind's callgrind twice,
once with only the warm-up and once with ``--requests`` more (320 by default), and the difference
divided by the requests is the user-space instructions per request: the same figure run after
run (±0.3 %), whatever else the machine is doing, so a change of 1 % in the request path shows.
It needs valgrind (``apt-get install valgrind``) and takes ~2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request, Response

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import default_emulator_config
from imagegate.server.app import create_app
from imagegate.server.gc_tuning import tune_collector
from imagegate.server.heap import keep_large_blocks
from imagegate.server.responses import SlicedResponse
from imagegate.server.settings import ServerSettings
from imagegate.upstream.transport import UpstreamHTTPClient

REQUEST = (
    b'{"model": "bench", "prompt": "a benchmark of the request path", "size": "1024x1024", "quality": "low"}'
)
CONCURRENCY = 16
ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


async def emulator_body() -> bytes:
    defaults = default_emulator_config()
    deployments = tuple(
        d.model_copy(update={"rpm": 10**7, "concurrency": 64, "image_bytes": "realistic"})
        for d in defaults.deployments
    )
    emulator = create_emulator_app(defaults.model_copy(update={"deployments": deployments}), time_scale=0.0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator), base_url="http://emulator"
    ) as c:
        route = f"/openai/deployments/{deployments[0].name}/images/generations?api-version=2025-04-01-preview"
        r = await c.post(
            route,
            headers={"api-key": "emulator-key"},
            json={"prompt": "x", "size": "1024x1024", "quality": "low"},
        )
        r.raise_for_status()
        return r.content


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/images/generations",
        "raw_path": b"/v1/images/generations",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer anything"),
            (b"content-length", str(len(REQUEST)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def one(app: ASGIApp) -> int:
    """One request through ``app``; the number of body bytes it sent."""
    delivered = False
    status = 0
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": REQUEST, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the response is written
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, sent
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            sent += len(message.get("body", b""))

    await app(scope(), receive, send)
    if status != 200:
        raise RuntimeError(f"status {status}")
    return sent


def floor_app(body: bytes) -> ASGIApp:
    floor = FastAPI()

    @floor.post("/v1/images/generations")
    async def generations(request: Request) -> Response:
        orjson.loads(await request.body())
        return SlicedResponse(body, media_type="application/json")

    return floor


async def cpu_per_request(app: ASGIApp, requests: int) -> tuple[float, int]:
    for _ in range(32):  # warm up: imports, caches, first-use allocations
        await one(app)
    per_worker = requests // CONCURRENCY
    sizes: list[int] = []

    async def worker() -> None:
        for _ in range(per_worker):
            sizes.append(await one(app))

    began = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - began) / max(1, per_worker * CONCURRENCY), sizes[0] if sizes else 0


async def main(requests: int, child: str | None = None) -> None:
    keep_large_blocks({})  # as `imagegate serve` does
    logging.getLogger("imagegate").setLevel(logging.WARNING)  # the access log goes nowhere
    body = await emulator_body()
    tmp = Path(tempfile.mkdtemp(prefix="imagegate-bench-"))
    config_file = tmp / "gateway.yaml"
    config_file.write_text(
        "deployments:\n  - {name: bench, endpoint: 'http://upstream.test', model: gpt-image-2,"
        " api_key: k, api_version: 2025-04-01-preview}\n"
    )

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    client = UpstreamHTTPClient(transport=httpx.MockTransport(upstream))
    app = create_app(
        load(config_file, {}),
        http_client=client,
        settings=ServerSettings(url_secret=b"bench-secret-16-bytes", data_dir=tmp),
        open_access=True,
    )
    tune_collector({})  # as `imagegate serve` does, once the app is built
    startup: asyncio.Queue[Any] = asyncio.Queue()
    replies: asyncio.Queue[Any] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, startup.get, replies.put)
    )
    if (await replies.get())["type"] != "lifespan.startup.complete":
        raise RuntimeError("the gateway did not start")
    if child is not None:  # under callgrind: the warm-up and ``requests`` more, nothing printed
        await cpu_per_request(floor_app(body) if child == "floor" else app, requests)
    else:
        floor_s, floor_bytes = await cpu_per_request(floor_app(body), requests)
        gateway_s, gateway_bytes = await cpu_per_request(app, requests)
    await startup.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan
    await client.aclose()
    if child is not None:
        return

    print(
        f"upstream body {len(body) / 1e6:.2f} MB; response {gateway_bytes / 1e6:.2f} MB "
        f"(floor {floor_bytes / 1e6:.2f} MB); {requests} requests, {CONCURRENCY} at a time, uvloop"
    )
    print(f"  floor    {floor_s * 1000:7.3f} ms CPU per request")
    print(f"  gateway  {gateway_s * 1000:7.3f} ms CPU per request")
    print(
        f"  the gateway's request path adds {(gateway_s - floor_s) * 1000:.3f} ms "
        f"({gateway_s / floor_s:.1f}x the floor)"
    )


def instructions(requests: int) -> None:
    """User-space instructions per request of each target, from callgrind (see the docstring)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind: apt-get install valgrind")
    out = Path(tempfile.mkdtemp(prefix="imagegate-callgrind-"))
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts run after run

    def start(target: str, n: int) -> tuple[subprocess.Popen[bytes], Path]:
        path = out / f"{target}-{n}.out"
        cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={path}", sys.executable, __file__]
        cmd += ["--child", target, "--requests", str(n)]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env), path

    def total(run: tuple[subprocess.Popen[bytes], Path]) -> int:
        proc, path = run
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"callgrind run failed: {err.decode()[-2000:]}")
        found = re.search(rb"^(?:summary|totals): (\d+)", path.read_bytes(), re.MULTILINE)
        if found is None:
            raise SystemExit(f"no instruction total in {path}")
        return int(found.group(1))

    per: dict[str, float] = {}
    for target in ("floor", "gateway"):  # two runs at a time: one per core
        base, more = start(target, 0), start(target, requests)
        per[target] = (total(more) - total(base)) / requests
    print(f"user-space instructions per request (callgrind, {requests} requests, {CONCURRENCY} at a time)")
    print(f"  floor    {per['floor'] / 1e6:7.3f} M")
    print(f"  gateway  {per['gateway'] / 1e6:7.3f} M")
    print(
        f"  the gateway's request path adds {(per['gateway'] - per['floor']) / 1e6:.3f} M "
        f"({per['gateway'] / per['floor']:.1f}x the floor)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=None, help="requests per target (default 3200)")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind instead of timing"
    )
    parser.add_argument("--child", choices=("floor", "gateway"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        instructions(320 if args.requests is None else args.requests)
        raise SystemExit(0)
    requests = 3200 if args.requests is None else args.requests
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(requests, args.child))
    else:
        uvloop.run(main(requests, args.child))

"""The chaos harness: an in-process emulator on the virtual clock (looptime), a gate configured
with two regions of gpt-image-1 and a gpt-image-1-mini fallback, a transport that enforces the
client's read timeout in process (``httpx.ASGITransport`` ignores timeouts), a load driver, and
the billing ledger check: every image the emulator billed is on a result, or on an attempt that
says it may have been billed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from imagegate import AsyncImageGate, ImageGateError, ImageResult
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import DeploymentSpec, EmulatorConfig
from imagegate.types import AttemptRecord

ENDPOINT = "http://emulator.imagegate.invalid"
# name -> (model, region); the emulator's quota: 60 rpm over 10 s windows, 4 concurrent
DEPLOYMENTS = {
    "g1-east": ("gpt-image-1", "eastus2"),
    "g1-swc": ("gpt-image-1", "swedencentral"),
    "mini": ("gpt-image-1-mini", "eastus2"),
}
EMULATOR_RPM = 60


def gate_config(
    *, configured_rpm: int = EMULATOR_RPM, concurrency: int = 4, retry: str = "{}", read_s: float = 60.0
) -> str:
    lines = "".join(
        f"  - {{name: {name}, endpoint: '{ENDPOINT}', model: {model}, region: {region},\n"
        "     api_key: emulator-key,\n"
        f"     rpm: {configured_rpm}, concurrency: {concurrency}, timeouts: {{read_s: {read_s}}}}}\n"
        for name, (model, region) in DEPLOYMENTS.items()
    )
    return (
        "deployments:\n"
        + lines
        + f"""models:
  default: [g1-east, g1-swc]
  cheap: [mini]
routing:
  default: {{fallbacks: [cheap]}}
retry: {retry}
"""
    )


class TimeoutTransport(httpx.AsyncBaseTransport):
    """Enforces the request's read timeout around the in-process app, as a socket would."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        if timeout is None:
            return await self._inner.handle_async_request(request)
        try:
            with anyio.fail_after(timeout):
                return await self._inner.handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no response within {timeout} s", request=request) from None


@dataclass
class Run:
    results: list[ImageResult] = field(default_factory=list)
    errors: list[ImageGateError] = field(default_factory=list)

    @property
    def attempts(self) -> list[AttemptRecord]:
        out = [a for r in self.results for a in r.attempts]
        return out + [a for e in self.errors for a in e.attempts]


@dataclass
class Chaos:
    gate: AsyncImageGate
    http: httpx.AsyncClient

    async def faults(self, name: str, *faults: dict[str, Any]) -> None:
        put = await self.http.put(f"/_emulator/deployments/{name}/faults", json=list(faults))
        assert put.status_code == 200, put.text

    async def counters(self) -> dict[str, dict[str, Any]]:
        listed = (await self.http.get("/_emulator/deployments")).json()["deployments"]
        return {d["name"]: d["counters"] for d in listed}

    async def drive(
        self,
        requests: int,
        *,
        every_s: float,
        during: Callable[[float], Awaitable[None]] | None = None,
        **params: Any,
    ) -> Run:
        """Start ``requests`` generations, one every ``every_s`` virtual seconds; ``during(t)``
        runs before each start (to change faults mid-run)."""
        run = Run()
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(i: int) -> None:
            try:
                run.results.append(await self.gate.generate(f"fox number {i}", quality="low", **params))
            except ImageGateError as exc:
                run.errors.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(requests):
                if during is not None:
                    await during(loop.time() - start)
                tg.start_soon(one, i)
                await asyncio.sleep(every_s)
        return run

    async def assert_every_billed_image_accounted(self, run: Run) -> None:
        """Billed images are on results, or on attempts flagged ``may_be_billed`` (never lost
        silently); and every image a result returned was billed by the emulator."""
        billed = {name: c["images_billed"] for name, c in (await self.counters()).items()}
        returned = {name: 0 for name in billed}
        for result in run.results:
            for image in result.images:
                assert image.deployment is not None
                returned[image.deployment] += 1
        flagged = {name: 0 for name in billed}
        for attempt in run.attempts:
            if attempt.may_be_billed and attempt.outcome != "ok":
                flagged[attempt.deployment] += 1
        for name in billed:
            assert returned[name] <= billed[name] <= returned[name] + flagged[name], (
                name,
                billed,
                returned,
                flagged,
            )


async def chaos(tmp_path: Path, *, emulator_concurrency: int = 4, **config: Any) -> Chaos:
    loop = asyncio.get_running_loop()
    specs = tuple(
        DeploymentSpec(
            name=n,
            model=m,
            region=r,
            rpm=EMULATOR_RPM,
            window_s=10,
            concurrency=emulator_concurrency,
            image_bytes="small",
        )
        for n, (m, r) in DEPLOYMENTS.items()
    )
    app = create_emulator_app(
        EmulatorConfig(deployments=specs, seed=7), time_scale=1.0, clock=loop.time, sleep=asyncio.sleep
    )
    http = httpx.AsyncClient(transport=TimeoutTransport(app), base_url=ENDPOINT)
    path = tmp_path / "imagegate.yaml"
    path.write_text(gate_config(**config))
    gate = AsyncImageGate(
        load(path, {}), http_client=http, clock=loop.time, sleep=asyncio.sleep, rand=lambda: 0.5
    )
    return Chaos(gate, http)

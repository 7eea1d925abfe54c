"""Zero overspend through the HTTP gateway: 50 concurrent requests against a key's budget that
allows 10, on every store backend (memory, SQLite, PostgreSQL).

The budget is reserved at request time from the estimate and settled from the actual cost after
the upstream answered, so the check that matters is that 50 reservations racing for room for 10
admit exactly 10 and send nothing else upstream. The backend holds every admitted request until
all 50 have been decided, so no early settle can make room for more.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from imagegate.policy.budget import Period
from imagegate.ports import EntryKind, KeyScope
from imagegate.server.app import build_app
from imagegate.server.backend import NO_OPTIONS, StreamItem
from imagegate.server.governance import Governance
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.options import RequestOptions
from imagegate.server.service import ImageService
from imagegate.server.state import GatewayState
from imagegate.types import Cost, EditRequest, GeneratedImage, ImageRequest, ImageResult, Usage

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PRICE = Decimal("0.05")  # estimate and actual cost of every request
B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()


class HeldBackend:
    """Counts the requests that reach it and holds them until ``release`` is set."""

    def __init__(self) -> None:
        self.arrived = 0
        self.release = asyncio.Event()

    async def generate(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult:
        self.arrived += 1
        await self.release.wait()
        return ImageResult(
            images=(GeneratedImage.from_b64(B64),),
            model="gpt-image-1",
            deployment="east",
            usage=Usage(input_tokens=10, output_tokens=272, total_tokens=282),
            cost=Cost(usd=PRICE, source="test"),
        )

    async def edit(
        self, request: EditRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult:
        raise AssertionError("not used")

    def stream(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> AsyncIterator[StreamItem]:
        raise AssertionError("not used")

    def estimate_usd(
        self, request: ImageRequest, options: RequestOptions = NO_OPTIONS, *, stream: bool = False
    ) -> Decimal:
        return PRICE

    def quality_of(self, request: ImageRequest) -> str | None:
        return request.quality or "high"


async def test_fifty_concurrent_requests_against_a_budget_for_ten_spend_exactly_it(stores: Any) -> None:
    created = await stores.keys.create(
        "team-a", KeyScope(budget_usd=PRICE * 10, budget_period=Period.MONTH), NOW
    )
    backend = HeldBackend()
    governance = Governance(
        keys=stores.keys, budgets=stores.budgets, ledger=stores.ledger, audit=stores.audit, now=lambda: NOW
    )
    metrics = GatewayMetrics()
    service = ImageService(backend=backend, governance=governance, metrics=metrics)
    app = build_app(GatewayState(metrics=metrics, images=service))
    headers = {"api-key": created.plaintext}
    body = {"prompt": "a fox", "model": "gpt-image-1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
        tasks = [
            asyncio.create_task(gw.post("/v1/images/generations", json=body, headers=headers))
            for _ in range(50)
        ]
        # every request is either held by the backend (admitted) or answered (refused)
        for _ in range(20_000):
            if backend.arrived + sum(t.done() for t in tasks) == 50:
                break
            await asyncio.sleep(0.001)
        else:
            raise AssertionError(f"{backend.arrived} admitted, {sum(t.done() for t in tasks)} answered")
        admitted = backend.arrived
        backend.release.set()
        responses = await asyncio.gather(*tasks)

    statuses = sorted(r.status_code for r in responses)
    assert admitted == 10 and statuses == [200] * 10 + [429] * 40
    refused = [r.json()["error"] for r in responses if r.status_code == 429]
    assert {e["code"] for e in refused} == {"budget_exceeded"}
    assert all(e["budget"] == f"key:{created.record.id}" for e in refused)
    usage = await stores.budgets.usage(created.record.budget(), NOW)
    assert (usage.spent_usd, usage.reserved_usd, usage.remaining_usd) == (PRICE * 10, 0, 0)
    request_rows = [e for e in await stores.ledger.entries() if e.kind is EntryKind.REQUEST]
    ok = [e for e in request_rows if e.status == "ok"]
    assert len(ok) == 10 and sum(e.cost_usd for e in ok) == PRICE * 10
    assert sum(e.cost_usd for e in request_rows) == PRICE * 10  # the refused ones cost nothing

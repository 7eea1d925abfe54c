"""Fakes for route tests: a backend that makes real PNGs without a pipeline, and a blob store."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import anyio

from imagegate.errors import ImageGateError, RateLimited
from imagegate.server.backend import NO_OPTIONS, StreamItem
from imagegate.server.options import RequestOptions
from imagegate.types import (
    AttemptRecord,
    Cost,
    EditRequest,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    PartialImage,
    Usage,
)

from .images import png

PNG = png(32, 32)
PNG_B64 = base64.b64encode(PNG).decode()


@dataclass
class FakeBackend:
    """Answers every request with ``n`` copies of a real PNG; can be told to fail or to block."""

    cost_usd: Decimal = Decimal("0.042")
    estimate: Decimal = Decimal("0.05")
    fail_with: ImageGateError | None = None
    default_quality: str = "high"  # what the model renders at when the request names no quality
    gate: anyio.Event | None = None  # when set, calls wait for it (to test concurrency)
    calls: list[ImageRequest] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    options: list[RequestOptions] = field(default_factory=list)

    def _result(self, request: ImageRequest) -> ImageResult:
        images = tuple(GeneratedImage.from_b64(PNG_B64) for _ in range(request.n))
        return ImageResult(
            images=images,
            model="gpt-image-1",
            deployment="gpt-image-1-swc",
            region="swedencentral",
            usage=Usage(input_tokens=10, output_tokens=272, total_tokens=282, input_text_tokens=10),
            cost=Cost(usd=self.cost_usd, source="test"),
            created=1_700_000_000,
            attempts=(
                AttemptRecord(number=1, deployment="gpt-image-1", outcome="rate_limited", status_code=429),
                AttemptRecord(
                    number=2, deployment="gpt-image-1-swc", outcome="ok", status_code=200, queued_s=2.5
                ),
            ),
        )

    async def _enter(self, request: ImageRequest, request_id: str, options: RequestOptions) -> None:
        self.calls.append(request)
        self.options.append(options)
        self.request_ids.append(request_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with

    async def generate(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult:
        await self._enter(request, request_id, options)
        return self._result(request)

    async def edit(
        self, request: EditRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult:
        await self._enter(request, request_id, options)
        return self._result(request)

    async def stream(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> AsyncIterator[StreamItem]:
        await self._enter(request, request_id, options)
        for index in range(request.partial_images or 0):
            yield PartialImage(index=index, image=GeneratedImage.from_b64(PNG_B64))
        yield self._result(request)

    def estimate_usd(
        self, request: ImageRequest, options: RequestOptions = NO_OPTIONS, *, stream: bool = False
    ) -> Decimal:
        return self.estimate

    def quality_of(self, request: ImageRequest) -> str | None:
        return request.quality or self.default_quality


class FakeRates:
    """Counts per key; refuses past ``per_minute`` (no clock: the window never rolls in a test)."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}

    async def hit(self, key: str, per_minute: int) -> None:
        self.hits[key] = self.hits.get(key, 0) + 1
        if self.hits[key] > per_minute:
            raise RateLimited(f"rate limit of {per_minute} requests per minute reached", retry_after_s=12.5)

"""What the HTTP face needs from the library face: one small Protocol.

The gateway's routes call an ``ImageBackend``; in production that is ``AsyncImageGate`` (the same
pipeline the Python library runs, adapted in ``server.app``), in route tests a fake. Keeping the
seam this narrow (httpx's ``handle_async_request`` idea) lets the routes be tested without the
pipeline and the pipeline without HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Protocol

from imagegate.server.options import NO_OPTIONS, RequestOptions
from imagegate.types import EditRequest, ImageRequest, ImageResult, PartialImage

__all__ = ["NO_OPTIONS", "ImageBackend", "StreamItem"]

StreamItem = PartialImage | ImageResult
"""A stream yields partial images, then exactly one ``ImageResult`` (the final images)."""


class ImageBackend(Protocol):
    async def generate(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult: ...

    async def edit(
        self, request: EditRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult: ...

    def stream(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> AsyncIterator[StreamItem]: ...

    def estimate_usd(
        self, request: ImageRequest, options: RequestOptions = NO_OPTIONS, *, stream: bool = False
    ) -> Decimal:
        """The most the request may cost (with ``options``' fallbacks, streamed or not), to hold
        against budgets: never less than it is billed, so concurrent requests cannot overspend.
        Raises ``InvalidRequest`` for a request the pipeline would refuse (before any hold)."""
        ...

    def quality_of(self, request: ImageRequest) -> str | None:
        """The quality the request will be rendered at: its own, else the model's default
        (``None`` when the model is unknown: the pipeline refuses it before anything is sent).
        A key's quality cap is judged on this, so leaving the quality out cannot get round it."""
        ...

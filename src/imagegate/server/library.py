"""The gateway's ``ImageBackend`` over the library's request path.

Validation (with translation when configured), the deployment plan, the upstream attempt loop and
pricing are the library's (``policy.validation``, ``ImageGateConfig.deployments_for``,
``upstream.client.UpstreamClient``, ``policy.pricing``); this class only strings them together
for the routes and turns the upstream's partial-image callback into an async iterator for SSE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

from imagegate.catalog import Catalog
from imagegate.config import DeploymentConfig, ImageGateConfig
from imagegate.errors import NoDeploymentAvailable
from imagegate.policy.pricing import cost_of, estimate
from imagegate.policy.validation import validate
from imagegate.server.backend import StreamItem
from imagegate.types import Change, EditRequest, ImageRequest, ImageResult, PartialImage
from imagegate.upstream.client import UpstreamClient

__all__ = ["LibraryBackend"]


class LibraryBackend:
    def __init__(self, config: ImageGateConfig, catalog: Catalog, upstream: UpstreamClient) -> None:
        self._config = config
        self._catalog = catalog
        self._upstream = upstream

    def _plan(self, request: ImageRequest) -> tuple[DeploymentConfig, ...]:
        plan = self._config.deployments_for(request.model)
        if not plan:
            raise NoDeploymentAvailable(
                f"no deployment serves {request.model or self._config.default_model!r}"
            )
        return plan

    def _prepare(
        self, request: ImageRequest
    ) -> tuple[tuple[DeploymentConfig, ...], ImageRequest, tuple[Change, ...]]:
        plan = self._plan(request)
        checked = validate(
            request, self._catalog.get(plan[0].model), self._catalog, translate=self._config.translate
        )
        return plan, checked.request, checked.changes

    def _priced(self, result: ImageResult, request: ImageRequest, changes: tuple[Change, ...]) -> ImageResult:
        dep = self._config.deployment(result.deployment)
        cost = cost_of(
            self._catalog.get(result.model),
            usage=result.usage,
            size=request.size,
            quality=request.quality,
            images=len(result.images),
            prompt=request.prompt,
            override=dep.price_override,
        )
        return replace(result, cost=cost, changes=changes)

    async def generate(self, request: ImageRequest, *, request_id: str) -> ImageResult:
        plan, checked, changes = self._prepare(request)
        return self._priced(await self._upstream.send(plan, checked), checked, changes)

    async def edit(self, request: EditRequest, *, request_id: str) -> ImageResult:
        return await self.generate(request, request_id=request_id)

    async def stream(self, request: ImageRequest, *, request_id: str) -> AsyncIterator[StreamItem]:
        plan, checked, changes = self._prepare(request)
        queue: asyncio.Queue[StreamItem | BaseException] = asyncio.Queue()

        async def on_partial(partial: PartialImage) -> None:
            await queue.put(partial)

        async def run() -> None:
            try:
                result = await self._upstream.send(plan, checked, on_partial=on_partial)
                await queue.put(self._priced(result, checked, changes))
            except BaseException as exc:  # handed to the consumer, which re-raises it
                await queue.put(exc)

        task = asyncio.create_task(run())
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, ImageResult):
                    return
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def estimate_usd(self, request: ImageRequest) -> Decimal:
        """The most any deployment of the plan would charge (reserve for the worst case).

        Validates first, so a bad request is a 400 before any money is held."""
        plan, checked, _ = self._prepare(request)
        costs = []
        for dep in plan:
            try:
                cost = estimate(
                    self._catalog.get(dep.model),
                    size=checked.size,
                    quality=checked.quality,
                    n=checked.n,
                    prompt=checked.prompt,
                    override=dep.price_override,
                )
            except (KeyError, ValueError):  # a size this model's table lacks: other models decide
                continue
            costs.append(cost.usd)
        return max(costs, default=Decimal(0))

    def served_model(self, logical_model: str | None) -> str | None:
        try:
            return self._config.deployments_for(logical_model)[0].model
        except Exception:
            return None

"""The ONE list that declares the order of the request path (Starlette's
``build_middleware_stack`` style). Add a stage by adding a line here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imagegate.catalog import Catalog
from imagegate.config import ImageGateConfig
from imagegate.pipeline.context import RequestContext
from imagegate.pipeline.fallback import FallbackStage
from imagegate.pipeline.stages import CostStage, Next, RouteStage, Stage, UpstreamStage, ValidateStage
from imagegate.routing.scheduler import Scheduler
from imagegate.types import ImageResult
from imagegate.upstream.client import UpstreamClient

__all__ = ["Pipeline", "PipelineDeps", "build_pipeline"]


@dataclass(frozen=True, slots=True)
class PipelineDeps:
    config: ImageGateConfig
    catalog: Catalog
    upstream: UpstreamClient
    scheduler: Scheduler | None = None  # routing: ranking, quota/breaker admission, learning
    clock: Callable[[], float] = time.monotonic


class Pipeline:
    """Runs stages in order; each gets ``call_next`` for the rest of the chain."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)

    async def __call__(self, ctx: RequestContext) -> ImageResult:
        return await self._at(0)(ctx)

    def _at(self, index: int) -> Next:
        async def run(ctx: RequestContext) -> ImageResult:
            if index >= len(self.stages):
                raise RuntimeError("the pipeline ended without a terminal stage")
            return await self.stages[index](ctx, self._at(index + 1))

        return run


def build_pipeline(d: PipelineDeps) -> Pipeline:
    return Pipeline(
        [
            ValidateStage(d.config, d.catalog),  # 400 before anything is sent
            # chain of models, deadline (on the scheduler's learnt latencies), n split
            FallbackStage(d.config, d.catalog, clock=d.clock, latencies=d.scheduler),
            RouteStage(d.config, d.scheduler, clock=d.clock),  # the plan; 503 when nothing can serve
            CostStage(d.config, d.catalog),  # prices what the upstream returned
            UpstreamStage(d.upstream),  # terminal: attempts, retries, fail-over
        ]
    )

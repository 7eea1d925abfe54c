from __future__ import annotations

import datetime as dt

import httpx
import pytest

from imagegate.catalog import default_catalog
from imagegate.config import RetryConfig
from imagegate.config_load import load
from imagegate.errors import InvalidRequest
from imagegate.pipeline.build import Pipeline, PipelineDeps, build_pipeline
from imagegate.pipeline.context import RequestContext
from imagegate.pipeline.fallback import FallbackStage
from imagegate.pipeline.stages import CostStage, Next, RouteStage, UpstreamStage, ValidateStage
from imagegate.types import ImageRequest, ImageResult
from imagegate.upstream.client import UpstreamClient

CONFIG = load(None, {}, today=dt.date(2026, 11, 24))


def pipeline_with(handler: httpx.MockTransport) -> Pipeline:
    http = httpx.AsyncClient(transport=handler)
    upstream = UpstreamClient(http, catalog=default_catalog(), retry=RetryConfig())
    return build_pipeline(PipelineDeps(CONFIG, default_catalog(), upstream))


def test_the_order_is_declared_once() -> None:
    stages = pipeline_with(httpx.MockTransport(lambda r: httpx.Response(500))).stages
    assert [type(s) for s in stages] == [ValidateStage, FallbackStage, RouteStage, CostStage, UpstreamStage]


async def test_validation_failure_never_reaches_upstream() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    run = pipeline_with(httpx.MockTransport(handler))
    with pytest.raises(InvalidRequest):
        await run(RequestContext(request=ImageRequest(prompt="fox", size="12x12")))
    assert calls == []


async def test_a_stage_short_circuits_by_returning() -> None:
    reached: list[str] = []

    class Cached:
        async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
            reached.append("cache")
            return ImageResult(images=(), model="m", deployment="d")

    class Boom:
        async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
            reached.append("upstream")
            raise AssertionError("must not run")

    result = await Pipeline([Cached(), Boom()])(RequestContext(request=ImageRequest(prompt="x")))
    assert result.deployment == "d" and reached == ["cache"]


async def test_route_keeps_deployments_of_the_validated_model() -> None:
    seen: dict[str, object] = {}

    class Capture:
        async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
            seen["plan"] = [d.name for d in ctx.plan]
            return ImageResult(images=(), model="m", deployment="d")

    run = Pipeline([ValidateStage(CONFIG, default_catalog()), RouteStage(), Capture()])
    await run(RequestContext(request=ImageRequest(prompt="x")))
    assert seen["plan"] == ["gpt-image-1", "gpt-image-1-swc"]

"""Shared fakes for upstream tests: deployments, PNG bodies, a fake clock that sleeps instantly."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from PIL import Image

from imagegate.catalog import default_catalog
from imagegate.config import ApiKeyAuth, DeploymentConfig, EntraAuth, RetryConfig, Secret
from imagegate.upstream.client import UpstreamClient

KEY = "azure-key-that-must-never-leak-0123456789"
CATALOG = default_catalog()


def png_b64(size: tuple[int, int] = (32, 16), color: tuple[int, int, int] = (200, 10, 10)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def dep(name: str = "east", **kwargs: Any) -> DeploymentConfig:
    base: dict[str, Any] = {
        "name": name,
        "endpoint": f"https://{name}.openai.azure.com",
        "model": "gpt-image-1",
        "region": "eastus2",
        "auth": ApiKeyAuth(key=Secret(KEY)),
        "api_version": "2025-04-01-preview",
    }
    return DeploymentConfig(**{**base, **kwargs})


def entra_dep(name: str = "east") -> DeploymentConfig:
    return dep(name, auth=EntraAuth())


def ok_body(n: int = 1, **extra: Any) -> bytes:
    usage = {
        "input_tokens": 50,
        "output_tokens": 4160,
        "total_tokens": 4210,
        "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
    }
    return orjson.dumps(
        {"created": 1700000000, "data": [{"b64_json": png_b64()} for _ in range(n)], "usage": usage, **extra}
    )


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=orjson.dumps(body), headers={"content-type": "application/json", **(headers or {})}
    )


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
    fake: FakeTime | None = None,
    retry: RetryConfig | None = None,
    **kwargs: Any,
) -> UpstreamClient:
    fake = fake or FakeTime()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return UpstreamClient(
        http,
        catalog=CATALOG,
        retry=retry or RetryConfig(),
        sleep=fake.sleep,
        clock=fake.clock,
        rand=lambda: 0.5,
        **kwargs,
    )

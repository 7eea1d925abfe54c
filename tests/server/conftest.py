from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from imagegate.server.app import build_app
from imagegate.server.state import GatewayState, ModelEntry

ClientFactory = Callable[[FastAPI], httpx.AsyncClient]


@pytest.fixture
def state() -> GatewayState:
    return GatewayState(models=lambda: (ModelEntry("gpt-image-1"), ModelEntry("dall-e-3")))


@pytest.fixture
def app(state: GatewayState) -> FastAPI:
    return build_app(state)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
        yield c

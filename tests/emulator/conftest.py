"""Fixtures for in-process emulator tests: a fake clock, a recording no-op sleep, and an
``httpx.AsyncClient`` on ``httpx.ASGITransport``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from emulator.support import AppFactory, FakeClock, RecordingSleep
from imagegate.emulator import EmulatorConfig, create_emulator_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeper(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest.fixture
def make_app(clock: FakeClock, sleeper: RecordingSleep) -> AppFactory:
    def factory(config: EmulatorConfig | None = None, **kw: Any) -> Starlette:
        kw.setdefault("time_scale", 0.0)
        kw.setdefault("clock", clock)
        kw.setdefault("sleep", sleeper)
        return create_emulator_app(config, **kw)

    return factory


@pytest.fixture
async def client(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app()), base_url="http://emu.test"
    ) as c:
        yield c

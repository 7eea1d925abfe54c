"""Shared helpers of the emulator tests: fake clock, recording sleep, URLs."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette

KEY = {"api-key": "emulator-key"}
PREVIEW = "2025-04-01-preview"
AppFactory = Callable[..., Starlette]


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """Records requested sleeps and advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


def gen_url(deployment: str = "gpt-image-1", version: str = PREVIEW) -> str:
    return f"/openai/deployments/{deployment}/images/generations?api-version={version}"


def edit_url(deployment: str = "gpt-image-1", version: str = PREVIEW) -> str:
    return f"/openai/deployments/{deployment}/images/edits?api-version={version}"

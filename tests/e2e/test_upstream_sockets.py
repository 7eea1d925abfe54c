"""The upstream client over real loopback sockets against the emulator under uvicorn: the
classification of transport failures (refused vs timed out after sending) is only honest with a
real socket, which httpx.ASGITransport does not have."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagegate import AsyncImageGate, UpstreamTimeout
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.serve import EmulatorServer, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_emulator_app(time_scale=0)) as srv:
        yield srv


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imagegate.yaml"
    path.write_text(text)
    return path


async def test_refused_connection_fails_over_without_waiting(
    server: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{free_port()}"
    path = config_file(
        tmp_path,
        f"deployments:\n"
        f"  - {{name: dead, endpoint: '{dead}', deployment: gpt-image-1, model: gpt-image-1,"
        " api_key: emulator-key}\n"
        f"  - {{name: live, endpoint: '{server.base_url}', deployment: gpt-image-1, model: gpt-image-1,"
        " api_key: emulator-key}\n"
        "models: {default: [dead, live]}\n",
    )
    async with AsyncImageGate(load(path, {}, today=dt.date(2026, 11, 24))) as gate:
        result = await gate.generate("a fox over real sockets", quality="low")
    assert result.deployment == "live"
    assert [(a.deployment, a.outcome, a.may_be_billed) for a in result.attempts] == [
        ("dead", "upstream_unreachable", False),
        ("live", "ok", True),
    ]
    assert "upstream attempt 1 deployment=dead" in caplog.text  # httpx/httpcore debug logs included
    assert "emulator-key" not in caplog.text and "over real sockets" not in caplog.text


async def test_read_timeout_after_sending_is_not_resent(server: EmulatorServer, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as admin:
        faults = [{"kind": "hang", "delay_s": 5, "phase": "after", "count": 1}]
        assert (
            await admin.put("/_emulator/deployments/gpt-image-1-mini/faults", json=faults)
        ).status_code == 200
        before = (await admin.get("/_emulator/deployments/gpt-image-1-mini")).json()["counters"]["requests"][
            "total"
        ]
    path = config_file(
        tmp_path,
        f"deployments:\n  - {{name: mini, endpoint: '{server.base_url}', deployment: gpt-image-1-mini,"
        " model: gpt-image-1-mini, api_key: emulator-key, timeouts: {read_s: 0.3}}\n",
    )
    async with AsyncImageGate(load(path, {}, today=dt.date(2026, 11, 24))) as gate:
        with pytest.raises(UpstreamTimeout) as info:
            await gate.generate("a slow fox", quality="low")
    (attempt,) = info.value.attempts
    assert attempt.outcome == "upstream_timeout" and attempt.may_be_billed
    async with httpx.AsyncClient(base_url=server.base_url) as admin:
        after = (await admin.get("/_emulator/deployments/gpt-image-1-mini")).json()["counters"]["requests"][
            "total"
        ]
    assert after - before == 1  # sent once, never resent

"""The upstream client over real loopback sockets against the emulator under uvicorn: the
classification of transport failures (refused vs timed out after sending) is only honest with a
real socket, which httpx.ASGITransport does not have."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate import AsyncImageGate, UpstreamTimeout
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import default_emulator_config
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


@pytest.fixture(scope="module")
def small_server() -> Iterator[EmulatorServer]:
    """Small images: generation costs milliseconds, so a request reaches its delivery hang long
    before a generous read timeout, even on a loaded 2-core machine."""
    defaults = default_emulator_config()
    deployments = tuple(d.model_copy(update={"image_bytes": "small"}) for d in defaults.deployments)
    app = create_emulator_app(defaults.model_copy(update={"deployments": deployments}), time_scale=0)
    with EmulatorServer(app) as srv:
        yield srv


def _counts(admin_json: dict[str, Any]) -> tuple[int, int]:
    """(requests the deployment answered or held, hang faults fired)."""
    counters = admin_json["counters"]
    return int(counters["requests"]["total"]), int(counters["faults_fired"].get("hang", 0))


async def test_read_timeout_after_sending_is_not_resent(small_server: EmulatorServer, tmp_path: Path) -> None:
    # The emulator holds the response until the client goes away (the hang ends on disconnect;
    # its delay_s is only a backstop), so nothing races the read timeout but the generation of a
    # small image. The timeout is long enough for that on a loaded machine and short enough
    # to keep the test quick; before, 0.3 s with realistic images could expire mid-generation.
    server = small_server
    deployment = "/_emulator/deployments/gpt-image-1-mini"
    async with httpx.AsyncClient(base_url=server.base_url) as admin:
        faults = [{"kind": "hang", "delay_s": 600, "phase": "after", "count": 1}]
        assert (await admin.put(f"{deployment}/faults", json=faults)).status_code == 200
        before, hangs_before = _counts((await admin.get(deployment)).json())
    path = config_file(
        tmp_path,
        f"deployments:\n  - {{name: mini, endpoint: '{server.base_url}', deployment: gpt-image-1-mini,"
        " model: gpt-image-1-mini, api_key: emulator-key, timeouts: {read_s: 2.0}}\n",
    )
    async with AsyncImageGate(load(path, {}, today=dt.date(2026, 11, 24))) as gate:
        with pytest.raises(UpstreamTimeout) as info:
            await gate.generate("a slow fox", quality="low")
    (attempt,) = info.value.attempts  # one attempt: the loop did not resend
    assert attempt.outcome == "upstream_timeout" and attempt.may_be_billed
    async with httpx.AsyncClient(base_url=server.base_url) as admin:
        after, hangs = _counts((await admin.get(deployment)).json())
    assert hangs - hangs_before == 1  # the request reached the server and was held: timed out *after* sending
    assert after - before == 1  # sent once, never resent

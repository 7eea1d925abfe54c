"""``upstream.transport.Http11Transport`` over real loopback sockets, against the emulator under
uvicorn: what it raises decides whether a request may be resent (``azure.classify``), so each
failure is provoked on the wire and checked against what the emulator counted."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate import AsyncImageGate, PartialImage, UpstreamFailed
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import default_emulator_config
from imagegate.emulator.serve import EmulatorServer, free_port
from imagegate.types import ImageResult
from imagegate.upstream.transport import Http11Transport, pooled_client

pytestmark = pytest.mark.e2e

ROUTE = "/openai/deployments/gpt-image-1-mini/images/generations?api-version=2025-04-01-preview"
ADMIN = "/_emulator/deployments/gpt-image-1-mini"
BODY = {"prompt": "a fox on the wire", "quality": "low", "size": "1024x1024"}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    defaults = default_emulator_config()
    deployments = tuple(d.model_copy(update={"image_bytes": "small"}) for d in defaults.deployments)
    app = create_emulator_app(defaults.model_copy(update={"deployments": deployments}), time_scale=0)
    with EmulatorServer(app) as srv:
        yield srv


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with pooled_client() as http:
        yield http


async def _faults(server: EmulatorServer, faults: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as admin:
        assert (await admin.put(f"{ADMIN}/faults", json=faults)).status_code == 200


async def _requests(server: EmulatorServer) -> int:
    async with httpx.AsyncClient(base_url=server.base_url) as admin:
        return int((await admin.get(ADMIN)).json()["counters"]["requests"]["total"])


async def test_json_body_read_whole_and_connection_reused(
    server: EmulatorServer, client: httpx.AsyncClient
) -> None:
    headers = {"api-key": "emulator-key"}
    first = await client.post(server.base_url + ROUTE, json=BODY, headers=headers)
    second = await client.post(server.base_url + ROUTE, json=BODY, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["data"][0]["b64_json"] == second.json()["data"][0]["b64_json"]
    assert first.headers["apim-request-id"] != second.headers["apim-request-id"]
    assert int(first.headers["content-length"]) == len(first.content)
    transport = client._transport
    assert isinstance(transport, Http11Transport)
    pool = transport._pool
    assert pool is not None
    # both requests went over one pooled keep-alive connection
    assert sum(len(v) for v in pool.idle.values()) == 1


async def test_error_status_and_body_pass_through(server: EmulatorServer, client: httpx.AsyncClient) -> None:
    response = await client.post(server.base_url + ROUTE, json=BODY, headers={"api-key": "wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "401"


async def test_refused_is_connect_error_not_sent(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError) as info:
        await client.post(f"http://127.0.0.1:{free_port()}{ROUTE}", json=BODY)
    assert "127.0.0.1" not in str(info.value)  # class names only, never URLs or headers


async def test_drop_mid_body_is_a_read_error_after_sending(
    server: EmulatorServer, client: httpx.AsyncClient
) -> None:
    await _faults(server, [{"kind": "drop_mid_body", "count": 1}])
    before = await _requests(server)
    with pytest.raises(httpx.ReadError):  # "sent": classify makes it UpstreamFailed, never resent
        await client.post(server.base_url + ROUTE, json=BODY, headers={"api-key": "emulator-key"})
    assert await _requests(server) - before == 1
    # the broken connection is not reused: the next request succeeds on a new one
    ok = await client.post(server.base_url + ROUTE, json=BODY, headers={"api-key": "emulator-key"})
    assert ok.status_code == 200


async def test_read_timeout_after_sending(server: EmulatorServer, client: httpx.AsyncClient) -> None:
    await _faults(server, [{"kind": "hang", "delay_s": 600, "phase": "after", "count": 1}])
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            server.base_url + ROUTE,
            json=BODY,
            headers={"api-key": "emulator-key"},
            timeout=httpx.Timeout(5.0, read=2.0),
        )


async def test_gate_drop_mid_body_is_upstream_failed_once(server: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "imagegate.yaml"
    path.write_text(
        f"deployments:\n  - {{name: mini, endpoint: '{server.base_url}', deployment: gpt-image-1-mini,"
        " model: gpt-image-1-mini, api_key: emulator-key}\n"
    )
    await _faults(server, [{"kind": "drop_mid_body", "count": 1}])
    before = await _requests(server)
    async with AsyncImageGate(load(path, {}, today=dt.date(2026, 11, 24))) as gate:
        with pytest.raises(UpstreamFailed) as info:
            await gate.generate("a dropped fox", quality="low")
    (attempt,) = info.value.attempts
    assert attempt.may_be_billed
    assert await _requests(server) - before == 1  # sent once, not resent


async def test_stream_arrives_event_by_event(server: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "imagegate.yaml"
    path.write_text(
        f"deployments:\n  - {{name: mini, endpoint: '{server.base_url}', deployment: gpt-image-1-mini,"
        " model: gpt-image-1-mini, api_key: emulator-key}\n"
    )
    items: list[object] = []
    async with AsyncImageGate(load(path, {}, today=dt.date(2026, 11, 24))) as gate:
        async for item in gate.stream("a streamed fox", partial_images=2, quality="low"):
            items.append(item)
    assert [type(i) for i in items] == [PartialImage, PartialImage, ImageResult]
    final = items[-1]
    assert isinstance(final, ImageResult) and final.images[0].data.startswith(b"\x89PNG")


async def test_multipart_edit_upload(server: EmulatorServer, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "room.png"
    Image.new("RGBA", (1024, 1024), (200, 10, 10, 255)).save(image)
    path = tmp_path / "imagegate.yaml"
    path.write_text(
        f"deployments:\n  - {{name: mini, endpoint: '{server.base_url}', deployment: gpt-image-1-mini,"
        " model: gpt-image-1-mini, api_key: emulator-key}\n"
    )
    async with AsyncImageGate(load(path, {}, today=dt.date(2026, 11, 24))) as gate:
        result = await gate.edit([image], "add a plant", quality="low")
    assert result.images[0].width == 1024 and result.usage is not None
    assert result.usage.input_image_tokens > 0  # the upload reached the emulator whole


def test_one_transport_across_event_loops(server: EmulatorServer) -> None:
    """Connections belong to a loop: a transport closed with its client in one loop serves
    again from another (``ImageGate`` runs its loop in a thread)."""
    transport = Http11Transport()

    async def once() -> int:
        async with httpx.AsyncClient(transport=transport) as http:
            response = await http.post(
                server.base_url + ROUTE, json=BODY, headers={"api-key": "emulator-key"}
            )
            return response.status_code

    assert asyncio.run(once()) == 200
    assert asyncio.run(once()) == 200

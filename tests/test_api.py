"""The library face against the in-process emulator (httpx.ASGITransport, no sockets)."""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops

from imagegate import AsyncImageGate, ContentFiltered, ImageGate, ImageResult, InvalidRequest, PartialImage
from imagegate.api import EMULATOR_NOTICE
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app

TODAY = dt.date(2026, 11, 24)
ENDPOINT = "http://emulator.imagegate.invalid"
FAST = {"IMAGEGATE_EMULATOR_TIME_SCALE": "0"}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def http() -> httpx.AsyncClient:
    app = create_emulator_app(time_scale=0)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT)


@pytest.fixture
async def gate(http: httpx.AsyncClient) -> AsyncIterator[AsyncImageGate]:
    fake = FakeTime()
    async with AsyncImageGate(
        load(None, {}, today=TODAY), http_client=http, sleep=fake.sleep, clock=fake.clock
    ) as g:
        g.fake = fake  # type: ignore[attr-defined]
        yield g
    await http.aclose()


async def counters(http: httpx.AsyncClient, name: str = "gpt-image-1") -> dict[str, Any]:
    return (await http.get(f"/_emulator/deployments/{name}")).json()["counters"]  # type: ignore[no-any-return]


async def test_high_quality_generation_saved_to_png(gate: AsyncImageGate, tmp_path: Path) -> None:
    result = await gate.generate("a red fox in the snow", size="1024x1024", quality="high")
    (path,) = result.save(tmp_path / "fox.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1024, 1024)
    assert result.deployment == "gpt-image-1" and result.region == "East US 2" and result.request_id
    assert result.usage is not None and result.usage.output_tokens == 4160
    assert result.cost is not None and not result.cost.estimated
    text_tokens = result.usage.input_text_tokens
    assert result.cost.usd == Decimal("0.1664") + Decimal(text_tokens) * 5 / 1_000_000
    assert [a.outcome for a in result.attempts] == ["ok"]


async def test_n_images_save_to_numbered_files(gate: AsyncImageGate, tmp_path: Path) -> None:
    result = await gate.generate("three foxes", n=3, quality="low", output_format="jpeg")
    paths = result.save(tmp_path / "out.jpg")
    assert [p.name for p in paths] == ["out-1.jpg", "out-2.jpg", "out-3.jpg"]
    assert all(img.format == "jpeg" and img.width == 1024 for img in result.images)


def square_png(color: tuple[int, ...], mode: str = "RGB", size: int = 1024) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), color).save(buf, "PNG")
    return buf.getvalue()


async def test_edit_changes_only_the_masked_area(gate: AsyncImageGate, tmp_path: Path) -> None:
    source = square_png((20, 60, 200))
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (384, 384, 640, 640))  # transparent square: the area to edit
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    src_path = tmp_path / "in.png"
    src_path.write_bytes(source)
    result = await gate.edit(
        src_path, "a bright yellow sun", mask=buf.getvalue(), size="1024x1024", quality="medium"
    )
    with Image.open(io.BytesIO(result.images[0].data)) as out, Image.open(io.BytesIO(source)) as original:
        diff = ImageChops.difference(out.convert("RGB"), original.convert("RGB"))
        bbox = diff.getbbox()
    assert bbox is not None, "the masked area must change"
    left, top, right, bottom = bbox
    assert left >= 384 and top >= 384 and right <= 640 and bottom <= 640
    assert result.usage is not None and result.usage.input_image_tokens > 0
    assert result.cost is not None and result.cost.usd > Decimal("0.04224")


async def test_429_with_retry_after_is_waited_out(gate: AsyncImageGate, http: httpx.AsyncClient) -> None:
    put = await http.put(
        "/_emulator/deployments/gpt-image-1/faults",
        json=[{"kind": "status", "status": 429, "count": 2, "retry_after_s": 4}],
    )
    assert put.status_code == 200
    result = await gate.generate("a patient fox", quality="low", model="gpt-image-1")
    assert gate.fake.sleeps == [4.0, 4.0]  # type: ignore[attr-defined]
    assert [(a.outcome, a.status_code, a.retry_after_s) for a in result.attempts] == [
        ("rate_limit_exceeded", 429, 4.0),
        ("rate_limit_exceeded", 429, 4.0),
        ("ok", 200, None),
    ]
    c = await counters(http)
    assert c["images_billed"] == 1 and c["requests"]["by_status"] == {"429": 2, "200": 1}


async def test_content_filter_reported_and_not_retried(gate: AsyncImageGate, http: httpx.AsyncClient) -> None:
    with pytest.raises(ContentFiltered) as info:
        await gate.generate("a massacre in the village", quality="low")
    assert info.value.categories == ("violence",)
    assert len(info.value.attempts) == 1
    c = await counters(http)
    assert c["requests"]["total"] == 1 and c["images_billed"] == 0


async def test_validation_failure_sends_nothing(gate: AsyncImageGate, http: httpx.AsyncClient) -> None:
    with pytest.raises(InvalidRequest, match="translate=True"):
        await gate.generate("a fox", quality="hd")
    with pytest.raises(InvalidRequest, match="mask"):
        await gate.edit(square_png((1, 2, 3)), "x", mask=square_png((0, 0, 0, 0), "RGBA", 512))
    assert (await counters(http))["requests"]["total"] == 0


async def test_dalle3_migrant_with_translate(gate: AsyncImageGate) -> None:
    result = await gate.generate("a fox", quality="hd", size="1792x1024", style="vivid", translate=True)
    assert {(c.field, c.new) for c in result.changes} == {
        ("quality", "high"),
        ("size", "1536x1024"),
        ("style", None),
    }
    assert (result.images[0].width, result.images[0].height) == (1536, 1024)


async def test_dalle3_deployment_costs_per_image(gate: AsyncImageGate) -> None:
    result = await gate.generate("a lighthouse", model="dall-e-3", quality="hd", size="1792x1024")
    assert result.cost is not None and result.cost.usd == Decimal("0.120")
    assert result.images[0].revised_prompt


async def test_stream_yields_partials_then_result(gate: AsyncImageGate) -> None:
    items = [item async for item in gate.stream("a fox at dawn", partial_images=2, quality="low")]
    assert [type(i).__name__ for i in items] == ["PartialImage", "PartialImage", "ImageResult"]
    final = items[-1]
    assert isinstance(final, ImageResult) and final.cost is not None and final.images[0].width == 1024
    assert isinstance(items[0], PartialImage) and items[0].index == 0
    with pytest.raises(ContentFiltered):
        _ = [item async for item in gate.stream("a massacre", partial_images=1)]


async def test_zero_config_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with AsyncImageGate(load(None, FAST, today=TODAY)) as g:
        result = await g.generate("a tiny fox", quality="low")
        assert result.images[0].data.startswith(b"\x89PNG")
    assert caplog.text.count(EMULATOR_NOTICE) == 1
    assert "emulator-key" not in caplog.text
    assert "a tiny fox" not in caplog.text  # prompts never logged


def test_sync_face(tmp_path: Path) -> None:
    with ImageGate(load(None, FAST, today=TODAY)) as g:
        result = g.generate("a sync fox", quality="low")
        assert result.save(tmp_path / "s.png")[0].exists()
        items = list(g.stream("a streamed sync fox", partial_images=1, quality="low"))
        assert [type(i).__name__ for i in items] == ["PartialImage", "ImageResult"]
        with pytest.raises(InvalidRequest):
            list(g.stream("bad", quality="hd"))
        assert g.estimate(model="gpt-image-1", size="1024x1024", quality="high", n=4).usd == Decimal("0.668")


async def test_from_config_file(tmp_path: Path, http: httpx.AsyncClient) -> None:
    path = tmp_path / "imagegate.yaml"
    path.write_text(
        f"deployments:\n  - name: swc\n    endpoint: {ENDPOINT}\n    deployment: gpt-image-1-swc\n"
        "    model: gpt-image-1\n    auth: {type: entra}\n    region: swedencentral\n"
    )

    class Cred:
        def get_token(self, *scopes: str) -> tuple[str, float]:
            return "entra-token", 9e12

    async with AsyncImageGate.from_config(
        path, environ={}, http_client=http, credential_factory=lambda a: Cred()
    ) as g:
        result = await g.generate("an entra fox", quality="low")
    assert result.deployment == "swc" and result.region == "Sweden Central"


async def test_doctor_costs_nothing_and_tells_401_from_404(
    gate: AsyncImageGate, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    results = await gate.doctor()
    assert all(r.ok and r.status_code == 400 for r in results)
    c = await counters(http)
    assert c["images_billed"] == 0 and c["requests"]["by_status"] == {"400": 1}
    path = tmp_path / "c.yaml"
    path.write_text(
        f"deployments:\n  - {{name: wrongkey, endpoint: '{ENDPOINT}', deployment: gpt-image-1,"
        " model: gpt-image-1, api_key: nope}\n"
        f"  - {{name: ghost, endpoint: '{ENDPOINT}', model: gpt-image-1, api_key: emulator-key}}\n"
    )
    async with AsyncImageGate.from_config(path, environ={}, http_client=http) as g:
        wrong, ghost = await g.doctor()
    assert not wrong.ok and wrong.status_code == 401
    assert not ghost.ok and ghost.status_code == 404 and "DeploymentNotFound" in ghost.detail


async def test_webp_refused_before_sending_on_the_deployment_route(
    gate: AsyncImageGate, http: httpx.AsyncClient
) -> None:
    with pytest.raises(InvalidRequest, match="webp"):
        await gate.generate("a fox", output_format="webp")
    assert (await counters(http))["requests"]["total"] == 0


async def test_v1_route_end_to_end(http: httpx.AsyncClient, tmp_path: Path) -> None:
    path = tmp_path / "v1.yaml"
    path.write_text(
        f"deployments:\n  - {{name: v1, endpoint: '{ENDPOINT}', deployment: gpt-image-1-mini,"
        " model: gpt-image-1-mini, route: v1, api_key: emulator-key}\n"
    )
    async with AsyncImageGate.from_config(path, environ={}, http_client=http) as g:
        result = await g.generate("a webp fox", output_format="webp", quality="low")
    assert result.images[0].format == "webp" and result.model == "gpt-image-1-mini"
    assert result.cost is not None and result.cost.usd < Decimal("0.01")

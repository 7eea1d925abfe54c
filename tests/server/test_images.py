"""Image routes over a fake backend: shapes, headers, URLs, streaming, both route families."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import orjson
import pytest
from fastapi import FastAPI

from imagegate.errors import NoDeploymentAvailable, UpstreamFailed
from imagegate.server.app import build_app
from imagegate.server.backend import StreamItem
from imagegate.server.governance import Governance
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.service import ImageService
from imagegate.server.state import GatewayState
from imagegate.stores.blobs import LocalBlobStore
from imagegate.types import GeneratedImage, ImageRequest, PartialImage

from .asgi import stream_over_asgi
from .fakes import PNG, PNG_B64, FakeBackend
from .images import png


class Clock:
    """A settable UTC clock for the governance steps and URL expiry."""

    def __init__(self) -> None:
        self.t = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


def make_app(backend: FakeBackend, **service: object) -> FastAPI:
    metrics = GatewayMetrics()
    svc = ImageService(
        backend=backend,
        governance=service.pop("governance", Governance()),  # type: ignore[arg-type]
        metrics=metrics,
        url_ttl_s=600,
        **service,  # type: ignore[arg-type]
    )
    return build_app(GatewayState(metrics=metrics, images=svc))


def local_blobs(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root, url_secret=b"test-secret-of-16+bytes", base_url="/v1/files/images")


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def gw(backend: FakeBackend, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(backend, blobs=local_blobs(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


async def test_generation_returns_openai_body_and_gateway_headers(
    gw: httpx.AsyncClient, backend: FakeBackend
) -> None:
    r = await gw.post("/v1/images/generations", json={"prompt": "a fox", "n": 2, "size": "1024x1024"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == 1_700_000_000
    assert [d["b64_json"] for d in body["data"]] == [PNG_B64, PNG_B64]
    assert body["usage"]["input_tokens_details"] == {"text_tokens": 10, "image_tokens": 0}
    assert body["size"] == "1024x1024"
    assert r.headers["x-imagegate-model"] == "gpt-image-1"
    assert r.headers["x-imagegate-deployment"] == "gpt-image-1-swc"
    assert r.headers["x-imagegate-region"] == "swedencentral"
    assert r.headers["x-imagegate-cost-usd"] == "0.042000"
    assert r.headers["x-imagegate-cost-estimated"] == "false"
    assert r.headers["x-imagegate-attempts"] == "2"
    assert "content-encoding" not in r.headers
    assert backend.calls[0].prompt == "a fox" and backend.calls[0].model is None
    assert backend.request_ids == [r.headers["x-request-id"]]


async def test_the_access_line_names_the_deployment_and_the_attempts(
    gw: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="imagegate.server.access"):
        r = await gw.post("/v1/images/generations", json={"prompt": "a fox"})
        await gw.get("/healthz")
    lines = [orjson.loads(x.getMessage()) for x in caplog.records if x.name == "imagegate.server.access"]
    assert [(x["path"], x.get("deployment"), x.get("attempts")) for x in lines] == [
        ("/v1/images/generations", r.headers["x-imagegate-deployment"], 2),
        ("/healthz", None, None),
    ]


async def test_gzip_is_never_applied_to_image_bodies(gw: httpx.AsyncClient) -> None:
    r = await gw.post("/v1/images/generations", json={"prompt": "x"}, headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in r.headers


async def test_azure_route_uses_path_model_and_needs_api_version(
    gw: httpx.AsyncClient, backend: FakeBackend
) -> None:
    url = "/openai/deployments/cheap/images/generations"
    r = await gw.post(
        url, params={"api-version": "2025-04-01-preview"}, json={"prompt": "x", "model": "cheap"}
    )
    assert r.status_code == 200, r.text
    assert backend.calls[-1].model == "cheap"
    r = await gw.post(url, json={"prompt": "x"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "api-version"


async def test_response_format_url_serves_the_image_by_signed_url(gw: httpx.AsyncClient) -> None:
    r = await gw.post("/v1/images/generations", json={"prompt": "x", "response_format": "url"})
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    assert "b64_json" not in r.json()["data"][0]
    assert url.startswith("http://gw/v1/files/images/") and "sig=" in url and "expires=" in url
    img = await gw.get(url)
    assert img.status_code == 200
    assert img.headers["content-type"] == "image/png"
    assert img.content == PNG
    tampered = url.replace("sig=", "sig=x")
    assert (await gw.get(tampered)).status_code == 403
    other = url.replace("/images/", "/images/0" if "/images/0" not in url else "/images/1", 1)
    assert (await gw.get(other)).status_code in (403, 404)


async def test_signed_url_expires(backend: FakeBackend, tmp_path: Path) -> None:
    clock = Clock()
    app = make_app(backend, governance=Governance(now=clock), blobs=local_blobs(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        url = (await c.post("/v1/images/generations", json={"prompt": "x", "response_format": "url"})).json()[
            "data"
        ][0]["url"]
        clock.t += timedelta(seconds=601)
        r = await c.get(url)
    assert r.status_code == 403
    assert "expired" in r.json()["error"]["message"]


async def test_signed_url_is_cached_no_longer_than_it_lives(backend: FakeBackend, tmp_path: Path) -> None:
    clock = Clock()
    app = make_app(backend, governance=Governance(now=clock), blobs=local_blobs(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        body = (await c.post("/v1/images/generations", json={"prompt": "x", "response_format": "url"})).json()
        url = body["data"][0]["url"]
        assert (await c.get(url)).headers["cache-control"] == "private, max-age=600, immutable"
        clock.t += timedelta(seconds=590)  # a cached copy must not outlive the URL's expiry
        assert (await c.get(url)).headers["cache-control"] == "private, max-age=10, immutable"


@pytest.mark.parametrize("expires", ["\u00b2", "\u0661\u0662", "\uff11", "-1", "1e9", " 1", ""])
async def test_a_malformed_expiry_is_a_404_not_a_500(gw: httpx.AsyncClient, expires: str) -> None:
    r = await gw.post("/v1/images/generations", json={"prompt": "x", "response_format": "url"})
    url = httpx.URL(r.json()["data"][0]["url"])
    bad = url.copy_set_param("expires", expires)
    got = await gw.get(bad)
    assert got.status_code == 404, got.text
    assert got.json()["error"]["code"] == "not_found"


async def test_url_without_blob_store_is_a_clear_400(backend: FakeBackend) -> None:
    app = make_app(backend)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post("/v1/images/generations", json={"prompt": "x", "response_format": "url"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "response_format"
    assert backend.calls == []


async def test_edit_multipart_on_both_route_families(gw: httpx.AsyncClient, backend: FakeBackend) -> None:
    files = [("image[]", ("a.png", png(), "image/png")), ("image[]", ("b.png", png(), "image/png"))]
    r = await gw.post("/v1/images/edits", data={"prompt": "hat", "model": "gpt-image-1"}, files=files)
    assert r.status_code == 200, r.text
    edit = backend.calls[-1]
    assert edit.operation == "edit" and edit.model == "gpt-image-1"
    r = await gw.post(
        "/openai/deployments/default/images/edits",
        params={"api-version": "2025-04-01-preview"},
        data={"prompt": "hat"},
        files={"image": ("a.png", png(), "image/png"), "mask": ("m.png", png(), "image/png")},
    )
    assert r.status_code == 200, r.text
    assert backend.calls[-1].model == "default"


def _events(text: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        out.append((lines["event"], orjson.loads(lines["data"])))
    return out


async def test_stream_sends_partial_then_completed_events(gw: httpx.AsyncClient) -> None:
    r = await gw.post("/v1/images/generations", json={"prompt": "x", "stream": True, "partial_images": 2})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert [e for e, _ in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [d["partial_image_index"] for _, d in events[:2]] == [0, 1]
    final = events[-1][1]
    assert final["type"] == "image_generation.completed" and final["b64_json"] == PNG_B64
    assert isinstance(final["usage"], dict)


class _PausesAfterFirstPartial(FakeBackend):
    """Streams one partial image, then waits for ``resume`` before the final image."""

    def __init__(self) -> None:
        super().__init__()
        self.resume = anyio.Event()

    async def stream(
        self, request: ImageRequest, *, request_id: str, options: object = None
    ) -> AsyncIterator[StreamItem]:  # type: ignore[override]
        self.calls.append(request)
        yield PartialImage(index=0, image=GeneratedImage.from_b64(PNG_B64))
        await self.resume.wait()
        yield self._result(request)


def _in_flight(app: FastAPI) -> float | None:
    return app.state.gateway.metrics.registry.get_sample_value("imagegate_requests_in_flight")


async def test_a_stream_is_in_flight_until_its_last_byte_is_sent() -> None:
    backend = _PausesAfterFirstPartial()
    app = make_app(backend)
    seen: list[float | None] = []

    async def midway() -> bool:
        seen.append(_in_flight(app))
        backend.resume.set()  # the final image comes; the client reads to the end
        return False

    sent = await stream_over_asgi(app, on_first_frame=midway)
    assert sent[0]["status"] == 200 and sent[-1]["more_body"] is False
    assert b"image_generation.completed" in b"".join(bytes(m.get("body", b"")) for m in sent[1:])
    assert seen == [1.0]  # streaming: still in flight after the first frame
    assert _in_flight(app) == 0.0  # the last byte sent


async def test_a_stream_stays_in_flight_until_the_client_leaves() -> None:
    backend = _PausesAfterFirstPartial()  # never resumed: the upstream is still generating
    app = make_app(backend)
    seen: list[float | None] = []

    async def midway() -> bool:
        seen.append(_in_flight(app))
        return True  # the client hangs up

    await stream_over_asgi(app, on_first_frame=midway)
    assert seen == [1.0]
    assert _in_flight(app) == 0.0


async def test_stream_with_idempotency_key_is_refused_before_anything_runs(
    gw: httpx.AsyncClient, backend: FakeBackend
) -> None:
    body = {"prompt": "x", "stream": True}
    r = await gw.post("/v1/images/generations", json=body, headers={"idempotency-key": "k-1"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "Idempotency-Key" and "'k-1'" in error["message"]
    assert "stream" in error["message"]
    assert backend.calls == []
    ok = await gw.post("/v1/images/generations", json=body)  # the same stream without the key runs
    assert ok.status_code == 200 and len(backend.calls) == 1


async def test_stream_error_before_first_event_keeps_its_status(backend: FakeBackend) -> None:
    backend.fail_with = NoDeploymentAvailable("every deployment is open", retry_after_s=3)
    app = make_app(backend)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post("/v1/images/generations", json={"prompt": "x", "stream": True})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "3"


async def test_upstream_failure_is_502_and_tells_the_sdk_not_to_retry(backend: FakeBackend) -> None:
    backend.fail_with = UpstreamFailed("connection reset after sending", deployment="gpt-image-1")
    app = make_app(backend)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post("/v1/images/generations", json={"prompt": "x"})
    assert r.status_code == 502
    assert r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["deployment"] == "gpt-image-1"


async def test_metrics_count_images_and_cost(gw: httpx.AsyncClient) -> None:
    await gw.post("/v1/images/generations", json={"prompt": "x", "n": 3})
    text = (await gw.get("/metrics")).text
    assert 'imagegate_images_total{model="gpt-image-1",operation="generate"} 3.0' in text
    assert 'imagegate_cost_usd_total{deployment="gpt-image-1-swc",model="gpt-image-1"} 0.042' in text


async def test_bad_body_never_reaches_the_backend(gw: httpx.AsyncClient, backend: FakeBackend) -> None:
    r = await gw.post("/v1/images/generations", content=b'{"prompt": "x", "n": "lots"}')
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    assert backend.calls == []


def test_png_fixture_is_real() -> None:
    assert base64.b64decode(PNG_B64) == PNG and PNG.startswith(b"\x89PNG")


async def test_metrics_count_upstream_attempts_by_outcome(gw: httpx.AsyncClient) -> None:
    await gw.post("/v1/images/generations", json={"prompt": "x"})
    text = (await gw.get("/metrics")).text
    assert 'imagegate_upstream_attempts_total{deployment="gpt-image-1",outcome="rate_limited"} 1.0' in text
    assert 'imagegate_upstream_attempts_total{deployment="gpt-image-1-swc",outcome="ok"} 1.0' in text
    assert "imagegate_requests_in_flight 0.0" in text


async def test_metrics_histogram_the_time_routing_held_attempts_back(gw: httpx.AsyncClient) -> None:
    await gw.post("/v1/images/generations", json={"prompt": "x"})
    text = (await gw.get("/metrics")).text
    assert 'imagegate_quota_wait_seconds_count{deployment="gpt-image-1-swc"} 1.0' in text
    assert 'imagegate_quota_wait_seconds_sum{deployment="gpt-image-1-swc"} 2.5' in text
    assert 'imagegate_quota_wait_seconds_sum{deployment="gpt-image-1"} 0.0' in text


async def test_translated_fallback_and_degraded_headers(backend: FakeBackend, tmp_path: Path) -> None:
    from dataclasses import replace

    from imagegate.types import Change

    original = backend._result

    def translated(request: object) -> object:
        result = original(request)  # type: ignore[arg-type]
        changes = (Change("quality", "hd", "high", "nearest"), Change("style", "vivid", None, "unsupported"))
        return replace(
            result, model="gpt-image-1-mini", changes=changes, fallback_from="gpt-image-1", degraded=True
        )

    backend._result = translated  # type: ignore[method-assign,assignment]
    app = make_app(backend, blobs=local_blobs(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post("/v1/images/generations", json={"prompt": "x", "quality": "hd"})
    assert r.headers["x-imagegate-translated"] == "quality;style"
    assert r.headers["x-imagegate-degraded"] == "true"
    assert r.headers["x-imagegate-fallback-from"] == "gpt-image-1"
    assert r.headers["x-imagegate-model"] == "gpt-image-1-mini"


async def test_the_body_echoes_what_was_made_not_what_was_asked(backend: FakeBackend, tmp_path: Path) -> None:
    """OpenAI's top-level ``size``/``quality``/``output_format`` describe the images generated:
    after translation, a fallback or degradation they are the values used (never "hd" for a
    gpt-image model), ``auto`` sizes are the real size, dropped parameters are not echoed."""
    from dataclasses import replace

    from imagegate.types import Change

    original = backend._result

    def changed(request: object) -> object:
        result = original(request)  # type: ignore[arg-type]
        changes = (
            Change("quality", "hd", "high", "nearest"),
            Change("quality", "high", "medium", "degraded: deadline"),
            Change("background", "opaque", None, "unsupported"),
        )
        return replace(result, changes=changes)

    backend._result = changed  # type: ignore[method-assign,assignment]
    app = make_app(backend, blobs=local_blobs(tmp_path))
    body = {"prompt": "x", "quality": "hd", "size": "auto", "background": "opaque", "output_format": "png"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post("/v1/images/generations", json=body)
        streamed = await c.post("/v1/images/generations", json={**body, "stream": True})
    answer = r.json()
    assert (answer["quality"], answer["size"], answer["output_format"]) == ("medium", "32x32", "png")
    assert "background" not in answer
    completed = _events(streamed.text)[-1][1]
    assert (completed["quality"], completed["size"]) == ("medium", "32x32") and "background" not in completed


async def test_per_request_option_headers_reach_the_backend(
    gw: httpx.AsyncClient, backend: FakeBackend
) -> None:
    headers = {
        "x-imagegate-translate": "true",
        "x-imagegate-fallback": "Same-Model",
        "x-imagegate-deadline-s": "30",
        "x-imagegate-degrade": "yes",
    }
    r = await gw.post("/v1/images/generations", json={"prompt": "x"}, headers=headers)
    assert r.status_code == 200
    assert backend.options[-1].kwargs() == {
        "translate": True,
        "fallback": "same-model",
        "deadline_s": 30.0,
        "degrade": True,
    }
    calls = len(backend.calls)
    for name, bad in (
        ("x-imagegate-deadline-s", "soon"),
        ("x-imagegate-deadline-s", "-1"),
        ("x-imagegate-degrade", "maybe"),
        ("x-imagegate-fallback", "cheap-chain"),  # the library takes a mode, not a chain's name
    ):
        r = await gw.post("/v1/images/generations", json={"prompt": "x"}, headers={name: bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == name
    assert len(backend.calls) == calls


async def test_the_sdks_read_timeout_bounds_the_deadline(gw: httpx.AsyncClient, backend: FakeBackend) -> None:
    """The openai SDK announces its read timeout; past it the SDK retries while the gateway would
    work on for nobody, so the deadline ends a little before it (never for a stream)."""
    gen = "/v1/images/generations"
    await gw.post(gen, json={"prompt": "x"}, headers={"x-stainless-read-timeout": "60.0"})
    assert backend.options[-1].deadline_s == 59.0
    await gw.post(gen, json={"prompt": "x"}, headers={"x-stainless-read-timeout": "3"})
    assert backend.options[-1].deadline_s == pytest.approx(2.7)
    both = {"x-stainless-read-timeout": "60", "x-imagegate-deadline-s": "30"}
    await gw.post(gen, json={"prompt": "x"}, headers=both)
    assert backend.options[-1].deadline_s == 30.0
    await gw.post(
        gen, json={"prompt": "x"}, headers={"x-stainless-read-timeout": "60", "x-imagegate-deadline-s": "90"}
    )
    assert backend.options[-1].deadline_s == 59.0
    for ignored in ("soon", "-1", "inf", "nan"):  # not our header: a bad value is never an error
        r = await gw.post(gen, json={"prompt": "x"}, headers={"x-stainless-read-timeout": ignored})
        assert r.status_code == 200 and backend.options[-1].deadline_s is None
    await gw.post(gen, json={"prompt": "x", "stream": True}, headers={"x-stainless-read-timeout": "3"})
    assert backend.options[-1].deadline_s is None  # a stream's read timeout is between events


async def _sent(response: object) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    await response({"type": "http"}, receive, send)  # type: ignore[operator]
    return messages


async def test_sliced_response_sends_zero_copy_slices_with_content_length() -> None:
    """On asyncio's own loop (whose transport copies what the socket does not take), a large
    part goes out in slices of at most SLICE_BYTES, each a view of the part; the last ends it."""
    from imagegate.server.responses import SLICE_BYTES, SlicedResponse

    body = bytes(range(256)) * (SLICE_BYTES * 2 // 256 + 7)
    start, *chunks = await _sent(SlicedResponse(body, media_type="application/json"))
    headers = dict(start["headers"])  # type: ignore[call-overload]
    assert headers[b"content-length"] == str(len(body)).encode()
    assert len(chunks) == 3
    assert [c["more_body"] for c in chunks] == [True, True, False]
    assert all(isinstance(c["body"], memoryview) and c["body"].obj is body for c in chunks)  # type: ignore[union-attr]
    assert max(len(c["body"]) for c in chunks) <= SLICE_BYTES  # type: ignore[arg-type]
    assert b"".join(bytes(c["body"]) for c in chunks) == body  # type: ignore[arg-type]


def test_sliced_response_sends_each_part_whole_under_uvloop() -> None:
    """uvloop's transport keeps a view of what the socket does not take at once, so each part
    goes in one message (the image itself, not a copy) and the last part ends the body."""
    import uvloop

    from imagegate.server.responses import SLICE_BYTES, SlicedResponse

    image = bytes(range(256)) * (SLICE_BYTES * 4 // 256)
    parts = [b'{"data":[{"b64_json":"', memoryview(image), b'"}]}']
    messages = uvloop.run(_sent(SlicedResponse(parts, media_type="application/json")))
    start, *chunks = messages
    assert dict(start["headers"])[b"content-length"] == str(sum(len(p) for p in parts)).encode()  # type: ignore[call-overload]
    assert [c["more_body"] for c in chunks] == [True, True, False]
    assert chunks[1]["body"] is parts[1]
    assert b"".join(bytes(c["body"]) for c in chunks) == b"".join(parts)  # type: ignore[arg-type]


async def test_an_empty_sliced_response_still_ends_its_body() -> None:
    from imagegate.server.responses import SlicedResponse

    start, *chunks = await _sent(SlicedResponse([b"", memoryview(b"")], status_code=204))
    assert dict(start["headers"])[b"content-length"] == b"0"  # type: ignore[call-overload]
    assert chunks == [{"type": "http.response.body", "body": b"", "more_body": False}]


@pytest.mark.parametrize(
    ("revised", "n", "usage", "echo"),
    [
        (None, 1, True, {"size": "1024x1024", "quality": "low"}),
        ('a "quoted" fox — ünïcode\n', 3, True, {}),
        (None, 2, False, {}),
        ("r", 1, False, {"output_format": "png", "background": None}),
    ],
)
def test_encode_images_is_the_payload_json_without_copying_images(
    revised: str | None, n: int, usage: bool, echo: dict[str, object]
) -> None:
    from dataclasses import replace

    from imagegate.server.responses import encode_images, image_payload
    from imagegate.types import GeneratedImage, ImageRequest

    body = orjson.dumps({"data": [{"b64_json": PNG_B64}]})  # an upstream body
    at = body.index(PNG_B64.encode())
    image = GeneratedImage.from_b64(memoryview(body)[at : at + len(PNG_B64)], revised_prompt=revised)
    result = FakeBackend()._result(ImageRequest(prompt="x", n=n))
    result = replace(result, images=(image,) * n, usage=result.usage if usage else None)
    parts = encode_images(result, echo=echo)
    assert b"".join(parts) == orjson.dumps(image_payload(result, echo=echo))
    assert orjson.loads(b"".join(parts))["data"][n - 1]["b64_json"] == PNG_B64
    # each image is written from the upstream body itself, not from a copy
    assert sum(1 for p in parts if isinstance(p, memoryview) and p.obj is body) == n


async def test_sliced_response_writes_parts_in_slices() -> None:
    from imagegate.server.responses import SLICE_BYTES, SlicedResponse

    big = bytes(range(256)) * (SLICE_BYTES // 256 + 3)
    parts = [b'{"a":"', memoryview(big), b'"}']
    response = SlicedResponse(parts, media_type="application/json", headers={"x-a": "1"})
    assert response.body == b"".join(parts)
    start, *chunks = await _sent(response)
    headers = dict(start["headers"])  # type: ignore[call-overload]
    assert headers[b"content-length"] == str(sum(len(p) for p in parts)).encode()
    assert headers[b"content-type"] == b"application/json" and headers[b"x-a"] == b"1"
    assert max(len(c["body"]) for c in chunks) <= SLICE_BYTES  # type: ignore[arg-type]
    assert [c["more_body"] for c in chunks][-1] is False and all(c["more_body"] for c in chunks[:-1])
    assert b"".join(bytes(c["body"]) for c in chunks) == b"".join(parts)  # type: ignore[arg-type]

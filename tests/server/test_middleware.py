"""Pure-ASGI middleware: request ids, structured access log, body size limit."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from imagegate.server.app import build_app
from imagegate.server.settings import ServerLimits
from imagegate.server.state import GatewayState


async def test_request_id_is_minted_and_unique(client: httpx.AsyncClient) -> None:
    a = (await client.get("/healthz")).headers["x-request-id"]
    b = (await client.get("/healthz")).headers["x-request-id"]
    assert a.startswith("req_") and b.startswith("req_") and a != b


async def test_well_formed_request_id_is_adopted_and_bad_one_replaced(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz", headers={"x-request-id": "trace.42"})).headers[
        "x-request-id"
    ] == "trace.42"
    bad = "x" * 200
    got = (await client.get("/healthz", headers={"x-request-id": bad})).headers["x-request-id"]
    assert got != bad and got.startswith("req_")
    got = (await client.get("/healthz", headers={"x-request-id": "a b\tc"})).headers["x-request-id"]
    assert got.startswith("req_")


async def test_an_adopted_request_id_fits_the_ledger(client: httpx.AsyncClient) -> None:
    """The request id is the ledger's and the audit log's ``request_id`` (64 characters): a
    longer one is not adopted, so it can never be cut short (and merged with another) there."""
    from imagegate.stores.schema import audit_events, ledger_entries

    width = ledger_entries.c.request_id.type.length
    assert width == audit_events.c.request_id.type.length == 64
    fits, too_long = "t" * width, "t" * (width + 1)
    assert (await client.get("/healthz", headers={"x-request-id": fits})).headers["x-request-id"] == fits
    got = (await client.get("/healthz", headers={"x-request-id": too_long})).headers["x-request-id"]
    assert got.startswith("req_") and len(got) <= width


async def test_access_log_is_one_json_line_without_query_or_headers(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="imagegate.server.access"):
        await client.get(
            "/v1/models?sig=capability-token",
            headers={"api-key": "sk-azure-SECRET", "authorization": "Bearer vk-SECRET"},
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "imagegate.server.access"]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["path"] == "/v1/models"
    assert entry["status"] == 200
    assert entry["method"] == "GET"
    assert entry["request_id"].startswith("req_")
    assert entry["bytes_out"] > 0
    assert "SECRET" not in lines[0] and "capability-token" not in lines[0]


def _echo_app(limits: ServerLimits) -> FastAPI:
    app = build_app(GatewayState(limits=limits))

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(str(len(await request.body())))

    return app


@pytest.fixture
async def small_client() -> AsyncIterator[httpx.AsyncClient]:
    app = _echo_app(ServerLimits(max_json_body_bytes=100, max_multipart_bytes=1000))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_body_within_limit_passes(small_client: httpx.AsyncClient) -> None:
    r = await small_client.post("/echo", content=b"x" * 100)
    assert r.status_code == 200 and r.text == "100"


async def test_declared_length_over_limit_is_413(small_client: httpx.AsyncClient) -> None:
    r = await small_client.post("/echo", content=b"x" * 101)
    assert r.status_code == 413
    err = r.json()["error"]
    assert err["code"] == "payload_too_large"
    assert "100 bytes" in err["message"]
    assert r.headers["x-request-id"]


async def test_chunked_body_over_limit_is_413(small_client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 30

    r = await small_client.post("/echo", content=chunks())
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


async def test_multipart_gets_the_larger_limit(small_client: httpx.AsyncClient) -> None:
    files = {"image": ("a.png", b"z" * 500, "image/png")}
    r = await small_client.post("/echo", files=files)
    assert r.status_code == 200
    r = await small_client.post("/echo", files={"image": ("a.png", b"z" * 1200, "image/png")})
    assert r.status_code == 413


async def _send_half_a_body_then_hang_up(app: FastAPI, path: str) -> list[dict[str, object]]:
    """Drive ``app`` as uvicorn does when a client sends half its declared body and leaves."""
    incoming: list[dict[str, object]] = [
        {"type": "http.request", "body": b'{"prompt": "a f', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


async def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client gone before its body arrived is the client's doing: no ERROR with a traceback
    (an operator's alert) and no 500 in the metrics (the 5xx rate); it is counted as 499, the
    status proxies use for "client closed request"."""
    app = _echo_app(ServerLimits())
    with caplog.at_level(logging.INFO):
        await _send_half_a_body_then_hang_up(app, "/echo")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "imagegate.server.access"]
    assert line["status"] == 499 and line["error_code"] == "client_disconnected"
    text = (await _metrics(app)).text
    assert 'imagegate_requests_total{method="POST",route="/echo",status="499"} 1.0' in text
    assert 'status="500"' not in text


async def _metrics(app: FastAPI) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.get("/metrics")


async def _post_with_pauses(
    app: FastAPI, pieces: list[tuple[float, bytes | None]]
) -> list[dict[str, object]]:
    """POST to ``/echo`` a body sent as ``(pause_s, piece)``; ``None``: the client stalls for good."""
    total = sum(len(p) for _, p in pieces if p is not None)
    queue = list(pieces)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        if not queue:
            await asyncio.Event().wait()  # the body is complete: wait for a disconnect that never comes
        pause, piece = queue.pop(0)
        await asyncio.sleep(pause)
        if piece is None:
            await asyncio.Event().wait()  # headers sent, then nothing: a slow-loris client
        return {"type": "http.request", "body": piece, "more_body": bool(queue)}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/echo", "raw_path": b"/echo", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(total).encode())],
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


@pytest.mark.looptime
async def test_a_body_that_stops_arriving_is_a_408_that_closes_the_connection() -> None:
    """Without a limit a client that sends its headers and then stalls holds its connection and
    a task forever, and keeps a graceful shutdown waiting for it. The gateway waits
    ``body_timeout_s`` (60 s) for each next piece of a body, then answers 408 naming the limit
    and closes the connection."""
    limits = ServerLimits()
    assert limits.body_timeout_s == 60.0
    app = _echo_app(limits)
    sent = await _post_with_pauses(app, [(0.0, b'{"prompt": "a f'), (0.0, None)])
    start, body = sent[0], sent[-1]
    assert start["status"] == 408
    headers = dict(start["headers"])  # type: ignore[arg-type]
    assert headers[b"connection"] == b"close" and headers[b"x-request-id"].startswith(b"req_")
    error = json.loads(body["body"])["error"]  # type: ignore[arg-type]
    assert error["code"] == "request_timeout" and "60" in error["message"]
    assert asyncio.get_running_loop().time() == pytest.approx(60.0, abs=1.0)  # looptime's clock


@pytest.mark.looptime
async def test_a_slow_body_that_keeps_coming_is_read_whole() -> None:
    """The limit is on the wait for the *next* piece (as nginx's client_body_timeout), not on
    the whole upload: a large edit over a slow link arrives in pieces well within it."""
    app = _echo_app(ServerLimits())
    sent = await _post_with_pauses(app, [(40.0, b"a" * 10), (40.0, b"b" * 10), (40.0, b"c" * 10)])
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"30"

"""Requests a graceful shutdown cuts off.

``imagegate serve --timeout-graceful-shutdown`` waits for running requests, then uvicorn cancels
the task of each one still running ("Cancel N running task(s), timeout graceful shutdown
exceeded") and runs the app's lifespan shutdown. These tests drive the ASGI app as uvicorn
does: the app runs in a task of its own, which is cancelled with uvicorn's message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
from fastapi import FastAPI

from imagegate.config_load import load
from imagegate.ports import EntryKind, KeyScope
from imagegate.server.app import create_app
from imagegate.server.governance import Governance
from imagegate.server.service import ImageService
from imagegate.server.settings import ServerSettings
from imagegate.stores.memory import MemoryStores
from imagegate.types import ImageRequest, ImageResult

from .asgi import http_scope
from .fakes import FakeBackend
from .test_images import local_blobs, make_app

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GEN = "/v1/images/generations"
UVICORN_CANCEL = "Task cancelled, timeout graceful shutdown exceeded"
ENDPOINT = "http://emulator.imagegate.invalid"


class _Generating(FakeBackend):
    """The upstream is still generating when the shutdown comes."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()

    async def generate(self, request: ImageRequest, **kwargs: Any) -> ImageResult:
        self.calls.append(request)
        self.reached.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover


async def _cut_off(
    app: FastAPI,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    reached: Callable[[], Awaitable[object]] | None = None,
    slow_client: bool = False,
    before_cancel: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Serve one request as uvicorn does and cancel its task as uvicorn's graceful shutdown does,
    once ``reached`` returns (or, with ``slow_client``, once the response body starts and the
    client stops reading), after ``before_cancel``. The messages sent, and what the app raised
    (None: it returned)."""
    payload = orjson.dumps(body)
    sent: list[dict[str, Any]] = []
    body_started = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.Event().wait()  # the client is still there
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if slow_client and message["type"] == "http.response.body":
            body_started.set()
            await asyncio.Event().wait()  # the socket's buffer is full: the client reads no more

    task = asyncio.create_task(app(http_scope(GEN, headers), receive, send))
    if slow_client:
        await asyncio.wait_for(body_started.wait(), timeout=10)
    else:
        assert reached is not None
        await asyncio.wait_for(reached(), timeout=10)
    if before_cancel is not None:
        await before_cancel()
    task.cancel(msg=UVICORN_CANCEL)
    try:
        await asyncio.wait_for(task, timeout=10)
    except asyncio.CancelledError as exc:
        return sent, exc
    return sent, None


def _errors_and_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("imagegate") and r.levelno >= logging.WARNING]


async def test_a_request_the_shutdown_cuts_off_gets_a_503_it_does_not_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the task's CancelledError reached uvicorn, which logged "Exception in ASGI
    application" with a traceback and answered a plain-text 500 "Internal Server Error": the
    openai SDK retries a 500, so a request whose image may already have been made and billed
    was sent again. Now the gateway answers in OpenAI's shape, 503 ``shutting_down`` with
    ``x-should-retry: false``, and logs one warning line."""
    backend = _Generating()
    app = make_app(backend, blobs=local_blobs(tmp_path))
    with caplog.at_level(logging.INFO):
        sent, raised = await _cut_off(app, {"prompt": "a fox"}, reached=backend.reached.wait)
    assert raised is None  # answered: nothing left for the server to report
    start, last = sent[0], sent[-1]
    assert start["status"] == 503
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["x-should-retry"] == "false" and headers["content-type"] == "application/json"
    assert headers["x-request-id"].startswith("req_")
    body = orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == ("server_error", "shutting_down", None)
    assert "shutting down" in error["message"] and "billed" in error["message"]
    assert not last.get("more_body", False)
    [line] = _errors_and_warnings(caplog)
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert headers["x-request-id"] in line.getMessage() and "503" in line.getMessage()
    access = [r for r in caplog.records if r.name == "imagegate.server.access"]
    assert [orjson.loads(r.getMessage())["status"] for r in access] == [503]


async def test_a_response_the_shutdown_cuts_off_mid_body_is_one_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the response has started, only the connection is left to break: the cancellation
    goes on to the server (which closes it), after one warning line; no ERROR, no traceback."""
    stores = MemoryStores()
    gov = Governance(ledger=stores.ledger, audit=stores.audit, now=lambda: NOW)
    app = make_app(FakeBackend(), governance=gov, blobs=local_blobs(tmp_path))
    with caplog.at_level(logging.INFO):
        sent, raised = await _cut_off(app, {"prompt": "a fox"}, slow_client=True)
    assert sent[0]["status"] == 200 and isinstance(raised, asyncio.CancelledError)
    [line] = _errors_and_warnings(caplog)
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "response started" in line.getMessage()


async def test_a_response_cut_off_mid_body_is_in_the_ledger_as_made_but_not_delivered(
    tmp_path: Path,
) -> None:
    """The ledger and audit rows of a non-streamed request are written after its body is sent
    (off the latency path): a shutdown that cancelled the send to a slow client skipped them,
    so a request that was made and billed was in neither. It is recorded now, as it happened:
    made (its cost, deployment and attempts), ``cancelled`` with ``undelivered``, after a 200.
    Until then it is still running for the shutdown, which waits for it to record itself
    before the ledger's write-behind closes (``ImageService.wait_idle``)."""
    stores = MemoryStores()
    gov = Governance(
        keys=stores.keys, budgets=stores.budgets, ledger=stores.ledger, audit=stores.audit, now=lambda: NOW
    )
    app = make_app(FakeBackend(), governance=gov, blobs=local_blobs(tmp_path))
    service: ImageService = app.state.gateway.images
    new = await stores.keys.create("t", KeyScope(budget_usd=Decimal("1")), NOW)
    running: list[int] = []

    async def count_running() -> None:
        running.append(await service.wait_idle(0))

    sent, raised = await _cut_off(
        app, {"prompt": "a fox"}, headers={"api-key": new.plaintext}, slow_client=True,
        before_cancel=count_running,
    )  # fmt: skip
    assert sent[0]["status"] == 200 and isinstance(raised, asyncio.CancelledError)
    assert running == [1] and await service.wait_idle(0) == 0
    rows = await stores.ledger.entries()
    [request] = [e for e in rows if e.kind is EntryKind.REQUEST]
    assert (request.status, request.error_code, request.http_status) == ("cancelled", "undelivered", 200)
    assert (request.cost_usd, request.cost_exact, request.deployment) == (
        Decimal("0.042"),
        True,
        "gpt-image-1-swc",
    )
    assert [(e.attempt, e.status) for e in rows if e.kind is EntryKind.ATTEMPT] == [
        (1, "rate_limited"),
        (2, "ok"),
    ]
    events = [e async for e in stores.audit.export()]
    assert [(e.action, e.outcome, e.details["http_status"]) for e in events] == [
        ("image.generate", "undelivered", 200)
    ]
    budget = new.record.budget()
    assert budget is not None
    usage = await stores.budgets.usage(budget, NOW)
    assert (usage.reserved_usd, usage.spent_usd) == (0, Decimal("0.042"))


def _gateway(
    upstream: httpx.AsyncClient,
    stores: MemoryStores,
    tmp_path: Path,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> FastAPI:
    """The real gateway (the library's pipeline, routing, attempt loop) over ``upstream``."""
    return create_app(
        load(None, {}, today=NOW.date()),
        http_client=upstream,
        sleep=sleep,
        settings=ServerSettings(data_dir=tmp_path, url_secret=b"shutdown-tests-secret", probe_tick_s=0),
        keys=stores.keys, budgets=stores.budgets, ledger=stores.ledger, audit=stores.audit,
        idempotency=stores.idempotency, open_access=False,
    )  # fmt: skip


async def test_a_request_cancelled_while_the_upstream_generates_keeps_its_estimate(tmp_path: Path) -> None:
    """Its attempt was sent and may be billed: the estimate stays on the budget. The ledger says
    what its client got, 503 (was 499), and has the attempt's row (was missing)."""
    stores = MemoryStores()
    now = datetime.now(UTC)
    new = await stores.keys.create("team", KeyScope(budget_usd=Decimal("1")), now)
    reached = asyncio.Event()

    async def generating(request: httpx.Request) -> httpx.Response:
        reached.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async with httpx.AsyncClient(transport=httpx.MockTransport(generating), base_url=ENDPOINT) as upstream:
        app = _gateway(upstream, stores, tmp_path)
        sent, raised = await _cut_off(
            app,
            {"prompt": "a fox", "quality": "low"},
            headers={"api-key": new.plaintext},
            reached=reached.wait,
        )
    assert sent[0]["status"] == 503 and raised is None
    rows = await stores.ledger.entries()
    [request] = [e for e in rows if e.kind is EntryKind.REQUEST]
    assert (request.status, request.http_status, request.error_code, request.cost_exact) == (
        "cancelled", 503, "cancelled", False,
    )  # fmt: skip
    assert request.cost_usd > 0
    [attempt] = [e for e in rows if e.kind is EntryKind.ATTEMPT]
    assert (attempt.attempt, attempt.status, attempt.cost_exact) == (1, "cancelled", False)
    budget = new.record.budget()
    assert budget is not None
    usage = await stores.budgets.usage(budget, now)
    assert (usage.reserved_usd, usage.spent_usd) == (0, request.cost_usd)


async def test_a_request_cancelled_with_no_attempt_in_flight_releases_its_hold(tmp_path: Path) -> None:
    """Azure answered 500 (not billed) and the attempt loop waits before its next attempt when
    the shutdown cancels the request: nothing may have been billed. Before, any cancelled
    request kept its estimate, so a shutdown charged every waiting request's budget."""
    stores = MemoryStores()
    now = datetime.now(UTC)
    new = await stores.keys.create("team", KeyScope(budget_usd=Decimal("1")), now)
    waiting = asyncio.Event()

    async def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"code": "server_error", "message": "try again"}})

    async def sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.Event().wait()

    async with httpx.AsyncClient(transport=httpx.MockTransport(failing), base_url=ENDPOINT) as upstream:
        app = _gateway(upstream, stores, tmp_path, sleep=sleep)
        sent, _ = await _cut_off(
            app,
            {"prompt": "a fox", "quality": "low"},
            headers={"api-key": new.plaintext},
            reached=waiting.wait,
        )
    assert sent[0]["status"] == 503
    rows = await stores.ledger.entries()
    [request] = [e for e in rows if e.kind is EntryKind.REQUEST]
    assert (request.status, request.http_status, request.cost_usd, request.cost_exact) == (
        "cancelled", 503, 0, True,
    )  # fmt: skip
    attempts = [(e.status, e.http_status, e.cost_exact) for e in rows if e.kind is EntryKind.ATTEMPT]
    assert attempts and all(a == ("upstream_failed", 500, True) for a in attempts), attempts
    budget = new.record.budget()
    assert budget is not None
    usage = await stores.budgets.usage(budget, now)
    assert (usage.reserved_usd, usage.spent_usd) == (0, 0)


async def test_an_idempotency_key_cut_off_while_billable_is_final_not_run_again(tmp_path: Path) -> None:
    """The shutdown cancelled an Idempotency-Key request while Azure generated: the key was freed,
    so the client's retry with it (to this or another replica) generated and billed a second
    image. The key now answers what the client got, the 503 (as for an error after sending)."""
    stores = MemoryStores()
    new = await stores.keys.create("team", KeyScope(), datetime.now(UTC))
    reached = asyncio.Event()
    calls = 0

    async def generating(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        reached.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    headers = {"api-key": new.plaintext, "idempotency-key": "order-7"}
    body = {"prompt": "a fox", "quality": "low"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(generating), base_url=ENDPOINT) as upstream:
        app = _gateway(upstream, stores, tmp_path)
        sent, _ = await _cut_off(app, body, headers=headers, reached=reached.wait)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
            with anyio.fail_after(10):
                again = await gw.post(GEN, json=body, headers=headers)
    first = b"".join(m.get("body", b"") for m in sent[1:])
    assert (sent[0]["status"], again.status_code, calls) == (503, 503, 1)
    assert again.content == first and again.headers["x-imagegate-idempotent-replay"] == "true"
    assert again.headers["x-should-retry"] == "false"


class _GeneratingOnce(_Generating):
    """Still generating at the first call (with no attempt known to be billed); done after."""

    async def generate(self, request: ImageRequest, **kwargs: Any) -> ImageResult:
        if not self.calls:
            return await super().generate(request, **kwargs)
        self.calls.append(request)
        return self._result(request)


async def test_an_idempotency_key_cut_off_before_anything_was_billed_may_run_again(tmp_path: Path) -> None:
    stores = MemoryStores()
    backend = _GeneratingOnce()
    app = make_app(backend, idempotency=stores.idempotency, blobs=local_blobs(tmp_path))
    headers = {"idempotency-key": "order-8"}
    sent, _ = await _cut_off(app, {"prompt": "a fox"}, headers=headers, reached=backend.reached.wait)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
        again = await gw.post(GEN, json={"prompt": "a fox"}, headers=headers)
    assert (sent[0]["status"], again.status_code, len(backend.calls)) == (503, 200, 2)


class _StallingBlobs:
    """An image store whose first write waits until the request is cancelled (a large answer
    written to a slow disk while the shutdown comes); writes after it go through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stalled = asyncio.Event()

    async def put(self, data: bytes, content_type: str) -> Any:
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.Event().wait()
        return await self.inner.put(data, content_type)

    async def get(self, digest: str) -> bytes:
        return await self.inner.get(digest)  # type: ignore[no-any-return]

    def signed_url(self, ref: Any, now: datetime, *, ttl_s: float) -> str:
        return self.inner.signed_url(ref, now, ttl_s=ttl_s)  # type: ignore[no-any-return]


async def test_an_answer_cut_off_while_kept_for_its_idempotency_key_is_recorded_and_replayed(
    tmp_path: Path,
) -> None:
    """The images were made and billed, and the shutdown cancelled the request while it stored
    the answer for the key's replays. Before, the request was in neither the ledger nor the
    audit log, and the key stayed claimed: a retry with it waited out the claim (65 minutes),
    then failed. Now it is recorded as not delivered, with the 503 its client got, and the
    answer is kept: a retry with the key gets the images, without a second generation."""
    stores = MemoryStores()
    gov = Governance(ledger=stores.ledger, audit=stores.audit, now=lambda: NOW)
    backend = FakeBackend()
    blobs = _StallingBlobs(local_blobs(tmp_path))
    app = make_app(backend, governance=gov, idempotency=stores.idempotency, blobs=blobs)
    headers = {"idempotency-key": "order-9"}
    sent, _ = await _cut_off(app, {"prompt": "a fox"}, headers=headers, reached=blobs.stalled.wait)
    assert sent[0]["status"] == 503
    [request] = [e for e in await stores.ledger.entries() if e.kind is EntryKind.REQUEST]
    assert (request.status, request.error_code, request.http_status) == ("cancelled", "undelivered", 503)
    assert (request.cost_usd, request.cost_exact) == (Decimal("0.042"), True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
        with anyio.fail_after(10):
            again = await gw.post(GEN, json={"prompt": "a fox"}, headers=headers)
    assert again.status_code == 200 and again.headers["x-imagegate-idempotent-replay"] == "true"
    assert len(again.json()["data"]) == 1 and len(backend.calls) == 1


async def test_a_stream_the_shutdown_cuts_off_is_one_warning_and_keeps_its_estimate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Mid-stream, only the connection is left: the cancellation goes on to the server after one
    warning line. The stream was under way (its upstream generating): cancelled, 499, the
    estimate kept, as for a client that hangs up mid-stream."""
    stores = MemoryStores()
    gov = Governance(ledger=stores.ledger, audit=stores.audit, now=lambda: NOW)
    app = make_app(FakeBackend(), governance=gov, blobs=local_blobs(tmp_path))
    with caplog.at_level(logging.INFO):
        sent, raised = await _cut_off(
            app, {"prompt": "a fox", "stream": True, "partial_images": 2}, slow_client=True
        )
    assert sent[0]["status"] == 200 and isinstance(raised, asyncio.CancelledError)
    [line] = _errors_and_warnings(caplog)
    assert line.levelno == logging.WARNING and "response started" in line.getMessage()
    [request] = [e for e in await stores.ledger.entries() if e.kind is EntryKind.REQUEST]
    assert (request.status, request.http_status, request.cost_usd, request.cost_exact) == (
        "cancelled", 499, Decimal("0.05"), False,
    )  # fmt: skip

"""Sending a response, or failing to on purpose: the ASGI side of the delivery faults.

How a broken connection is emulated depends on the server, because ASGI has no "close the
socket" message:

- Under uvicorn the request's ``receive`` callable is a bound method of uvicorn's
  ``RequestResponseCycle``, which holds the connection's asyncio transport. Aborting that transport
  resets the TCP connection: the client sees "server disconnected without sending a response"
  (``refuse``) or "peer closed connection without sending complete message body"
  (``drop_mid_body``), which the openai SDK and httpx classify as connection errors, as they would
  a refused or reset connection to Azure. (A true TCP refusal, RST to the SYN, would need the
  listening socket closed; an abort right after accept is what a client can tell apart least.)
- In process (``httpx.ASGITransport``) there is no socket; the app raises the exception httpx
  raises for the same failure (``httpx.ConnectError`` / ``httpx.RemoteProtocolError``), which
  ASGITransport passes to the caller (its default ``raise_app_exceptions=True``).
- A hang waits for the client to go away (``http.disconnect``) or for ``delay_s`` on the injected
  sleep, whichever comes first, then drops the connection. In process, bound it with your own
  timeout (ASGITransport ignores httpx timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson

from imagegate.emulator.config import FaultSpec

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


STREAM_ERROR = (
    b"event: error\ndata: "
    + orjson.dumps(
        {
            "type": "error",
            "error": {
                "message": "An error occurred while processing your request.",
                "type": "server_error",
                "param": None,
                "code": "server_error",
            },
        }
    )
    + b"\n\n"
)


def server_transport(receive: Receive) -> asyncio.BaseTransport | None:
    """uvicorn's connection transport behind ``receive``, when there is one. Recognised by what
    it can do (``abort``/``close``), not by class: uvloop's transports are not subclasses of
    ``asyncio.BaseTransport``, and the emulator must drop connections under either loop."""
    owner = getattr(receive, "__self__", None)
    transport = getattr(owner, "transport", None)
    if isinstance(transport, asyncio.BaseTransport) or callable(getattr(transport, "abort", None)):
        return transport
    return None


async def drop_connection(receive: Receive, *, started: bool) -> None:
    """Reset the client's connection (uvicorn) or raise what httpx raises for it (in process)."""
    transport = server_transport(receive)
    if transport is None:
        if started:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        raise httpx.ConnectError("[Errno 111] Connection refused (emulated)")
    if hasattr(transport, "abort"):
        transport.abort()
    else:  # pragma: no cover - every asyncio stream transport has abort()
        transport.close()
    # Let uvicorn run connection_lost, so it marks the cycle disconnected and sends no 500.
    for _ in range(3):
        await asyncio.sleep(0)


async def wait_for_disconnect_or(receive: Receive, sleep: Sleep, delay_s: float) -> None:
    """Return when the client disconnects or ``delay_s`` passes on ``sleep``."""

    async def disconnected() -> None:
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                return

    tasks = [asyncio.ensure_future(disconnected()), asyncio.ensure_future(sleep(delay_s))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def send_body(
    send: Send,
    receive: Receive,
    *,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    fault: FaultSpec | None,
    sleep: Sleep,
) -> None:
    """Send a complete body, applying a delivery fault if one was scripted."""
    kind = fault.kind if fault is not None else None
    if kind == "malformed_json":
        body = body[: max(1, len(body) // 2)]
    if kind == "hang":
        assert fault is not None
        await wait_for_disconnect_or(receive, sleep, fault.delay_s)
        await drop_connection(receive, started=False)
        return
    full = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": full})
    if kind == "drop_mid_body":
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        await drop_connection(receive, started=True)
        return
    if kind == "slow_body":
        assert fault is not None
        pieces = 16
        step = max(1, -(-len(body) // pieces))
        for i in range(0, len(body), step):
            await send({"type": "http.response.body", "body": body[i : i + step], "more_body": True})
            await sleep(fault.delay_s / pieces)
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.body", "body": body})


async def send_stream(
    send: Send,
    receive: Receive,
    *,
    headers: list[tuple[bytes, bytes]],
    chunks: AsyncIterator[bytes],
    fault: FaultSpec | None,
    sleep: Sleep,
) -> None:
    """Send an event stream chunk by chunk (no content-length), applying a delivery fault."""
    kind = fault.kind if fault is not None else None
    if kind == "hang":
        assert fault is not None
        await wait_for_disconnect_or(receive, sleep, fault.delay_s)
        await drop_connection(receive, started=False)
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    sent = 0
    async for chunk in chunks:
        if kind == "stream_error" and (sent == 1 or b".completed" in chunk[:40]):
            await send({"type": "http.response.body", "body": STREAM_ERROR, "more_body": True})
            break
        if kind == "malformed_json":
            chunk = chunk.replace(b'"type"', b'"type', 1)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += 1
        if kind == "drop_mid_body":
            await drop_connection(receive, started=True)
            return
        if kind == "slow_body":
            assert fault is not None
            await sleep(fault.delay_s / 4)
    await send({"type": "http.response.body", "body": b""})

"""Server-level cross-cutting concerns as tiny pure-ASGI classes (Starlette's TrustedHost shape).

Pure ASGI rather than ``BaseHTTPMiddleware`` because these wrap multi-megabyte image bodies and
SSE streams: a ``send``/``receive`` wrapper passes each message through untouched, whereas
``call_next`` re-streams the body through a memory channel. The ``send`` wrappers are plain
functions that return the next ``send``'s awaitable, not coroutines of their own: a 2 MB image
goes out in ~10 messages, each through every wrapper, and a coroutine per wrapper per message
is work that does nothing.

The order is declared once, in ``server.app``::

    RequestIdMiddleware      outermost: every response, even a 500, carries x-request-id
    AccessLogMiddleware      one structured JSON line per request (no prompts, keys or bodies)
    ErrorMiddleware          anything that escaped the routes → OpenAI-shaped 500 (or its 4xx);
                             a request the server cancels at shutdown → 503 shutting_down
    BodySizeLimitMiddleware  413 before reading a body larger than allowed; 408 when it stalls
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.errors import ImageGateError, PayloadTooLarge, RequestTimeout, ShuttingDown
from imagegate.ids import new_hex_id
from imagegate.server.errors import internal_error_response, render_error
from imagegate.server.logconfig import REQUEST_ID

__all__ = [
    "AccessLogMiddleware",
    "BodySizeLimitMiddleware",
    "ErrorMiddleware",
    "RequestIdMiddleware",
    "request_state",
]

access_log = logging.getLogger("imagegate.server.access")
error_log = logging.getLogger("imagegate.server")

CLIENT_DISCONNECTED = "client_disconnected"  # error_code of a request whose client left mid-body
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # 64: the ledger's request_id column


def request_state(scope: Scope) -> dict[str, Any]:
    """The per-request dict (``request.state`` in Starlette) shared by middleware and routes."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


class RequestIdMiddleware:
    """Adopt a well-formed incoming ``x-request-id`` (or mint one) and echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and _CLIENT_REQUEST_ID.match(incoming) else f"req_{new_hex_id()}"
        request_state(scope)["request_id"] = rid
        raw_rid = rid.encode()

        def send_with_id(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", raw_rid))
                message["headers"] = headers
            return send(message)

        token = REQUEST_ID.set(rid)  # for every record logged while it is served (logconfig)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


# Response headers an image route sets that the access line repeats: which deployment served
# and after how many upstream attempts (the attempt loop logs only failed attempts at INFO).
_SERVED_BY = {b"x-imagegate-deployment": "deployment", b"x-imagegate-attempts": "attempts"}


class AccessLogMiddleware:
    """One INFO line per request as JSON: method, path (no query string), status, bytes, time,
    and for an image request the deployment that served it and the upstream attempts it took.

    The same timing feeds ``observe(route_template, method, status, duration_s)`` (the metrics).

    Only what is safe at INFO goes in: the route path, the request id, the virtual key's *id*
    and the model, when routes put them in the request state. Never headers, queries or bodies.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        observe: Callable[[str, str, int, float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.observe = observe
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = self.clock()
        status = 0
        sent = 0
        served: dict[str, Any] = {}

        def counting_send(message: Message) -> Awaitable[None]:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    field = _SERVED_BY.get(name)
                    if field is not None:
                        served[field] = int(value) if field == "attempts" else bytes(value).decode("latin-1")
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            return send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            duration_s = self.clock() - start
            if not status:  # nothing was sent: a client that left (499), else the server failed
                status = 499 if request_state(scope).get("error_code") == CLIENT_DISCONNECTED else 500
            if self.observe is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.observe(template, str(scope.get("method")), status, duration_s)
            if access_log.isEnabledFor(logging.INFO):
                state = request_state(scope)
                line: dict[str, Any] = {
                    "event": "request",
                    "request_id": state.get("request_id"),
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "bytes_out": sent,
                    "duration_ms": round(duration_s * 1000, 3),
                }
                for key in ("key_id", "model", "deployment", "error_code"):
                    if key in state:
                        line[key] = state[key]
                line.update(served)
                access_log.info(orjson.dumps(line).decode())


class ErrorMiddleware:
    """Catch what escaped the routes. Tree errors keep their status; anything else is a 500.

    The traceback goes to the server log (ERROR) with the request id; the client gets only the
    request id. If the response had already started, the connection is the only thing left to
    break, so the exception is re-raised to the server.

    A request the server cancels is no error of the gateway's: uvicorn cancels a request only
    when a graceful shutdown runs out of time (``serve --timeout-graceful-shutdown``). It is one
    WARNING line, and a client that can still be answered gets a 503 ``shutting_down`` with
    ``x-should-retry: false`` (its image may already have been made and billed), not uvicorn's
    plain-text 500, which the openai SDK would retry. Once the response has started the
    cancellation goes on to the server, which closes the connection (``server.logconfig`` keeps
    uvicorn from logging it as an exception).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        def tracking_send(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            return send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            # The client left before its request was read: nobody to answer and nothing broken
            # here, so no traceback; the access line says so (status 499, this error code).
            request_state(scope)["error_code"] = CLIENT_DISCONNECTED
        except asyncio.CancelledError:
            state = request_state(scope)
            rid = state.get("request_id")
            state["error_code"] = ShuttingDown.code
            if started:
                error_log.warning("request %s cut off by the shutdown after its response started", rid)
                raise
            error_log.warning("request %s stopped by the shutdown: answered 503 %s", rid, ShuttingDown.code)
            await render_error(ShuttingDown(), request_id=rid)(scope, receive, send)
        except Exception as exc:
            state = request_state(scope)
            rid = state.get("request_id")
            if started:
                error_log.error("error after the response started (request_id=%s)", rid, exc_info=exc)
                raise
            if isinstance(exc, ImageGateError):
                response = render_error(exc, request_id=rid)
                state["error_code"] = exc.code
            else:
                error_log.error("unexpected error (request_id=%s)", rid, exc_info=exc)
                response = internal_error_response(rid)
                state["error_code"] = "internal_error"
            await response(scope, receive, send)


class BodySizeLimitMiddleware:
    """413 when a request body is larger than ``limit_for(scope)`` bytes; 408 when the next piece
    of a body takes longer than ``timeout_s`` to arrive.

    A declared ``content-length`` over the limit is refused before reading anything; a chunked
    body is counted as it arrives and refused as soon as it passes the limit. The limit is chosen
    per request (a JSON generation needs far less room than a multipart edit with 16 images).
    The timeout applies between pieces while the body is incomplete, never after (the app then
    waits on ``receive`` for a disconnect for as long as a response streams).
    """

    def __init__(
        self, app: ASGIApp, *, limit_for: Callable[[Scope], int], timeout_s: float | None = None
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await render_error(_too_large(limit), request_id=request_state(scope).get("request_id"))(
                scope, receive, send
            )
            return
        seen = 0
        complete = False
        timeout_s = self.timeout_s

        async def limited_receive() -> Message:
            nonlocal seen, complete
            if complete or timeout_s is None:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout(timeout_s):
                        message = await receive()
                except TimeoutError:
                    raise RequestTimeout(
                        f"the request body stopped arriving: no data for {timeout_s:g} s "
                        f"(the longest the gateway waits for the next piece of a body)"
                    ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than the {limit} bytes allowed for this route")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None

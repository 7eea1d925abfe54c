"""``create_emulator_app``: the Starlette app of the Azure OpenAI image emulator, and its route
table.

Routes (§1): ``POST /openai/deployments/{deployment}/images/generations|images/edits|chat/completions``
(``?api-version=`` required), the v1 surface ``POST /openai/v1/images/generations|images/edits|
chat/completions`` (deployment name in ``model``), ``GET /private/images/{id}/generated_NN.png``
for DALL·E url results, and the admin API under ``/_emulator/``. Any other path answers Azure's
404 ``Resource not found`` JSON, a wrong method 405 in the same envelope.

Starlette, not FastAPI: the emulator parses bodies itself (Azure's validation order and messages
are the product), so FastAPI's request models would only be in the way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.emulator import admin
from imagegate.emulator.chat import handle_chat
from imagegate.emulator.config import EmulatorConfig, default_emulator_config
from imagegate.emulator.images import handle_image, serve_blob
from imagegate.emulator.reply import new_request_id
from imagegate.emulator.state import Clock, EmulatorState, Sleep, region_display

Handler = Callable[[Request], Awaitable[Response]]


def _image(state: EmulatorState, route: str, *, v1: bool) -> Handler:
    async def endpoint(request: Request) -> Response:
        return await handle_image(state, request, route=route, v1=v1)

    return endpoint


def _chat(state: EmulatorState, *, v1: bool) -> Handler:
    async def endpoint(request: Request) -> Response:
        return await handle_chat(state, request, v1=v1)

    return endpoint


def _bind(state: EmulatorState, fn: Callable[[EmulatorState, Request], Awaitable[Response]]) -> Handler:
    async def endpoint(request: Request) -> Response:
        return await fn(state, request)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        body = {"error": {"code": "405", "message": "Method not allowed"}}
    elif status == 404:
        body = {"error": {"code": "404", "message": "Resource not found"}}
    else:
        body = {"error": {"code": str(status), "message": "Bad request"}}
    return JSONResponse(body, status_code=status)


class AzureHeaders:
    """Pure-ASGI middleware: responses under ``/openai/`` that the routes did not build (Starlette's
    404/405) still carry ``apim-request-id``, ``x-request-id`` and ``x-ms-region``, as every Azure
    response does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/openai/"):
            await self.app(scope, receive, send)
            return

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"apim-request-id" not in names:
                    request_id = new_request_id().encode()
                    headers += [
                        (b"apim-request-id", request_id),
                        (b"x-request-id", request_id),
                        (b"x-ms-region", region_display("eastus2").encode()),
                    ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_ids)


def create_emulator_app(
    config: EmulatorConfig | None = None,
    *,
    time_scale: float | None = None,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
) -> Starlette:
    """Build the emulator. ``config=None``: the default deployments. ``clock`` (monotonic seconds)
    drives quota windows, fault windows and url expiry; ``sleep`` is used for latency and fault
    delays; ``time_scale`` (default: the config's, 1.0) multiplies sampled latencies only, 0 makes
    them instant. The state is reachable as ``app.state.emulator``."""
    state = EmulatorState(
        config or default_emulator_config(), time_scale=time_scale, clock=clock, sleep=sleep
    )
    dep = "/openai/deployments/{deployment}"
    routes = [
        Route(f"{dep}/images/generations", _image(state, "generations", v1=False), methods=["POST"]),
        Route(f"{dep}/images/edits", _image(state, "edits", v1=False), methods=["POST"]),
        Route(f"{dep}/chat/completions", _chat(state, v1=False), methods=["POST"]),
        Route("/openai/v1/images/generations", _image(state, "generations", v1=True), methods=["POST"]),
        Route("/openai/v1/images/edits", _image(state, "edits", v1=True), methods=["POST"]),
        Route("/openai/v1/chat/completions", _chat(state, v1=True), methods=["POST"]),
        Route("/private/images/{blob_id}/generated_{index}.png", _bind(state, serve_blob), methods=["GET"]),
        Route("/_emulator/deployments", _bind(state, admin.list_deployments), methods=["GET"]),
        Route("/_emulator/deployments/{name}", _bind(state, admin.get_deployment), methods=["GET"]),
        Route("/_emulator/deployments/{name}/faults", _bind(state, admin.put_faults), methods=["PUT"]),
        Route("/_emulator/reset", _bind(state, admin.reset), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        middleware=[Middleware(AzureHeaders)],
    )
    app.state.emulator = state
    return app

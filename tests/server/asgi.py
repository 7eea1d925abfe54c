"""Driving the gateway's ASGI app the way uvicorn does (ASGI spec 2.3), for what an HTTP client
cannot do on cue: hang up after the first frame of a stream, or stop reading mid-body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson

GENERATIONS = "/v1/images/generations"


def http_scope(path: str = GENERATIONS, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A POST's scope with a JSON content type and ``headers``."""
    raw = [
        (k.encode(), v.encode()) for k, v in {**(headers or {}), "content-type": "application/json"}.items()
    ]
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": raw, "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80),
    }  # fmt: skip


async def _hang_up() -> bool:
    return True


async def stream_over_asgi(
    app: Any,
    *,
    headers: dict[str, str] | None = None,
    partial_images: int = 1,
    on_first_frame: Callable[[], Awaitable[bool]] = _hang_up,
) -> list[dict[str, Any]]:
    """Stream one generation. After its first frame ``on_first_frame`` runs and says whether the
    client then hangs up (by default it does); else the client reads to the last byte. Returns
    the messages the app sent."""
    body = orjson.dumps({"prompt": "x", "stream": True, "partial_images": partial_images})
    first_frame, hang_up = anyio.Event(), anyio.Event()
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_frame.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, http_scope(GENERATIONS, headers), receive, send)
            await first_frame.wait()
            if await on_first_frame():
                hang_up.set()
    return sent

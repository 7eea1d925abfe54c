"""The emulator's one response type: JSON or an event stream, with the headers Azure puts on
every response, an optional delivery fault, and a hook that runs when sending ends (to release the
concurrency slot only once the client has the body, or has been cut off)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import Response

from imagegate.emulator.config import FaultSpec
from imagegate.emulator.delivery import Receive, Scope, Send, Sleep, drop_connection, send_body, send_stream


def new_request_id() -> str:
    return str(uuid.uuid4())


class Reply(Response):
    """An ASGI response that may misbehave on purpose (see delivery.py)."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        *,
        body: bytes = b"",
        chunks: AsyncIterator[bytes] | None = None,
        fault: FaultSpec | None = None,
        sleep: Sleep,
        drop: bool = False,
        on_done: Callable[[], None] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.status_code = status
        self.reply_headers = {"content-type": content_type, **headers}
        self.payload = body
        self.chunks = chunks
        self.fault = fault
        self.sleep = sleep
        self.drop = drop
        self.on_done = on_done
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        try:
            if self.drop:
                await drop_connection(receive, started=False)
                return
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.reply_headers.items()]
            if self.chunks is not None:
                await send_stream(
                    send, receive, headers=raw, chunks=self.chunks, fault=self.fault, sleep=self.sleep
                )
            else:
                await send_body(
                    send,
                    receive,
                    status=self.status_code,
                    headers=raw,
                    body=self.payload,
                    fault=self.fault,
                    sleep=self.sleep,
                )
        finally:
            if self.on_done is not None:
                self.on_done()


def json_reply(status: int, payload: Any, headers: dict[str, str], *, sleep: Sleep, **kw: Any) -> Reply:
    return Reply(status, headers, body=orjson.dumps(payload), sleep=sleep, **kw)

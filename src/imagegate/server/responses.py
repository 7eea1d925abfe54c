"""``ImageResult`` → the OpenAI/Azure images response, as pre-encoded bytes, plus our headers.

Bytes matter here (DESIGN.md, "Moving image bytes"): the upstream base64 is written to the
client as received, never copied. The body is a list of parts: small JSON pieces (``orjson``)
around each image's base64, which is a view into the upstream body (``GeneratedImage.b64``;
base64 has nothing to escape in JSON). Nothing is decoded, re-encoded, logged or hashed on this
path; only ``response_format=url`` decodes each image once, to store it where its URL points.
``ClosingStreamingResponse`` is the event-stream answer, closing its frames however it ends.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from imagegate.types import Base64, GeneratedImage, ImageResult, Usage

__all__ = [
    "ClosingStreamingResponse",
    "SlicedResponse",
    "encode_images",
    "image_payload",
    "result_headers",
    "usage_payload",
]

SLICE_BYTES = 256 * 1024

Part = bytes | memoryview


class SlicedResponse(Response):
    """A pre-encoded body, given as parts, sent without copying; ``content-length`` is set.

    The parts are written as they are (no join: the images in them are views of the upstream
    bodies). How many messages that takes depends on the event loop's transport:

    * uvloop (what ``imagegate serve`` runs) keeps a view of whatever the socket does not take
      at once and writes the rest from C as the socket drains, so each part goes in one message,
      the last one ending the body: 3 messages for a one-image response, where 256 KB slices
      took 11, each through every middleware's ``send`` and uvicorn's.
    * asyncio's own transport (Python 3.11) copies the unsent rest of a write into a bytearray:
      a second copy of the image per slow client. There the parts go in slices of at most
      256 KB, and the server's flow control between them (uvicorn waits for the buffer to
      drain) keeps a response at about one copy of its body however slow the client is.

    ``background`` runs once the body is sent; ``undelivered`` instead, when sending it failed
    or was cancelled (a graceful shutdown cancels a send to a slow client), shielded.
    """

    def __init__(
        self,
        content: Part | Sequence[Part],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        undelivered: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.parts: tuple[Part, ...] = (
            (content,) if isinstance(content, bytes | memoryview) else tuple(content)
        )
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.undelivered = undelivered
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in (headers or {}).items()
            if k.lower() != "content-length"
        ]
        raw.append((b"content-length", str(sum(len(part) for part in self.parts)).encode("latin-1")))
        if self.media_type is not None and all(k != b"content-type" for k, _ in raw):
            raw.append((b"content-type", self.media_type.encode("latin-1")))
        self.raw_headers = raw

    @property
    def body(self) -> bytes:  # type: ignore[override]
        """The parts joined: a copy, for idempotency replays and tests, never the hot path."""
        return b"".join(self.parts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            step = _slice_bytes()
            pieces = [p for p in self.parts if len(p)]
            for i, part in enumerate(pieces):
                last = i == len(pieces) - 1
                if len(part) <= step:
                    await send({"type": "http.response.body", "body": part, "more_body": not last})
                    continue
                view = memoryview(part)
                for start in range(0, len(view), step):
                    end = start + step
                    await send(
                        {
                            "type": "http.response.body",
                            "body": view[start:end],
                            "more_body": not (last and end >= len(view)),
                        }
                    )
            if not pieces:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BaseException:
            if self.undelivered is not None:
                with anyio.CancelScope(shield=True):
                    await self.undelivered()
            raise
        if self.background is not None:
            await self.background()


_WHOLE = sys.maxsize
_STEP_BY_LOOP: dict[type, int] = {}


def _slice_bytes() -> int:
    """The largest message for the running loop's transport (see ``SlicedResponse``)."""
    kind = type(asyncio.get_running_loop())
    step = _STEP_BY_LOOP.get(kind)
    if step is None:
        step = _STEP_BY_LOOP[kind] = _WHOLE if kind.__module__.startswith("uvloop") else SLICE_BYTES
    return step


def usage_payload(usage: Usage) -> dict[str, Any]:
    """The ``usage`` object in OpenAI's field names."""
    out: dict[str, Any] = {
        "total_tokens": usage.total_tokens,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "input_tokens_details": {
            "text_tokens": usage.input_text_tokens,
            "image_tokens": usage.input_image_tokens,
        },
    }
    if usage.output_image_tokens is not None or usage.output_text_tokens is not None:
        out["output_tokens_details"] = {
            "image_tokens": usage.output_image_tokens or 0,
            "text_tokens": usage.output_text_tokens or 0,
        }
    return out


def _item(image: GeneratedImage, url: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"url": url} if url is not None else {"b64_json": image.b64_json}
    if image.revised_prompt is not None:
        item["revised_prompt"] = image.revised_prompt
    return item


def image_payload(
    result: ImageResult,
    *,
    urls: Sequence[str] | None = None,
    echo: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The response body as a dict (``b64_json`` as text: a copy of each image; the gateway
    writes ``encode_images`` instead). ``urls`` replaces the base64 of each image
    (``response_format=url``); ``echo`` adds OpenAI's top-level ``size``, ``quality``,
    ``background``, ``output_format`` when known."""
    data = [_item(img, urls[i] if urls is not None else None) for i, img in enumerate(result.images)]
    return {"created": result.created or int(time.time()), "data": data, **_tail(result, echo)}


def _tail(result: ImageResult, echo: Mapping[str, Any] | None) -> dict[str, Any]:
    """What follows ``data``: the echoed parameters, then ``usage``."""
    tail: dict[str, Any] = {k: v for k, v in (echo or {}).items() if v is not None}
    if result.usage is not None:
        tail["usage"] = usage_payload(result.usage)
    return tail


def encode_images(
    result: ImageResult,
    *,
    urls: Sequence[str] | None = None,
    echo: Mapping[str, Any] | None = None,
) -> list[Part]:
    """``image_payload``'s JSON as parts for ``SlicedResponse``: each image's base64 is a part
    of its own, exactly the bytes the upstream sent (``orjson.dumps(image_payload(...))`` has
    the same content, one copy of every image later)."""
    if urls is not None or any(image.b64 is None for image in result.images):
        return [orjson.dumps(image_payload(result, urls=urls, echo=echo))]
    parts: list[Part] = [b'{"created":%d,"data":[' % (result.created or int(time.time()))]
    for i, image in enumerate(result.images):
        b64: Base64 = image.b64  # type: ignore[assignment]  # checked above
        parts += [b'{"b64_json":"' if i == 0 else b',{"b64_json":"', b64]
        if image.revised_prompt is not None:
            parts.append(b'","revised_prompt":' + orjson.dumps(image.revised_prompt) + b"}")
        else:
            parts.append(b'"}')
    tail = _tail(result, echo)
    parts.append(b"]," + orjson.dumps(tail)[1:] if tail else b"]}")
    return parts


def result_headers(result: ImageResult) -> dict[str, str]:
    """``x-imagegate-*``: where the images came from, what they cost, what was changed.

    ``translated`` lists the parameters translation changed (``field`` names only, semicolon
    separated); ``fallback-from`` names the model asked for when another model served;
    ``degraded`` says the quality was lowered to meet a deadline.
    """
    headers = {"x-imagegate-model": result.model, "x-imagegate-deployment": result.deployment}
    if result.region:
        headers["x-imagegate-region"] = result.region
    if result.cost is not None:
        headers["x-imagegate-cost-usd"] = format(result.cost.rounded(6), "f")
        headers["x-imagegate-cost-estimated"] = "true" if result.cost.estimated else "false"
    if result.changes:
        headers["x-imagegate-translated"] = ";".join(dict.fromkeys(c.field for c in result.changes))
    if result.attempts:
        headers["x-imagegate-attempts"] = str(len(result.attempts))
    if result.fallback_from:
        headers["x-imagegate-fallback-from"] = result.fallback_from
    if result.degraded:
        headers["x-imagegate-degraded"] = "true"
    return headers


class ClosingStreamingResponse(StreamingResponse):
    """Closes its frames when the response ends however it ends (a client that hangs up cancels
    the send), so the stream's own clean-up (settle the budget hold, record the request) runs
    now, not whenever the garbage collector finalizes the generator. Then calls ``on_end``: the
    request is in flight until its last byte is sent or its client left, not only until the
    response object was made (``ImageService.handle`` leaves that count to it)."""

    def __init__(self, *args: Any, on_end: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_end()

    async def stream_response(self, send: Send) -> None:
        frames = self.body_iterator
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

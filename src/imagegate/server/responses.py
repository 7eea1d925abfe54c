"""``ImageResult`` → the OpenAI/Azure images response, as pre-encoded bytes, plus our headers.

Bytes matter here (DESIGN.md, "Moving image bytes"): the upstream base64 string is placed into
the response as received, encoded exactly once by ``orjson.dumps`` (a straight copy; base64 has
nothing to escape). Nothing is decoded, re-encoded, logged or hashed on this path; only
``response_format=url`` decodes each image once, to store it where its URL points.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from imagegate.types import GeneratedImage, ImageResult, Usage

__all__ = ["SlicedResponse", "image_payload", "result_headers", "usage_payload"]

SLICE_BYTES = 256 * 1024


class SlicedResponse(Response):
    """A pre-encoded body sent as zero-copy slices of 256 KB.

    One ``send`` of a 2 MB body makes the server copy whatever the socket does not take at once
    into its write buffer (a second copy of the image per slow client). Slices let the server
    apply flow control between them (uvicorn waits for the buffer to drain), so a response holds
    about one copy of its body however slow the client is. ``content-length`` is still set.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        view = memoryview(self.body)
        for start in range(0, len(view), SLICE_BYTES):
            await send(
                {"type": "http.response.body", "body": view[start : start + SLICE_BYTES], "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()


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
    """The response body as a dict ready for ``orjson.dumps``. ``urls`` replaces the base64 of
    each image (``response_format=url``); ``echo`` adds OpenAI's top-level ``size``,
    ``quality``, ``background``, ``output_format`` when known."""
    data = [_item(img, urls[i] if urls is not None else None) for i, img in enumerate(result.images)]
    body: dict[str, Any] = {"created": result.created or int(time.time()), "data": data}
    if echo:
        body.update({k: v for k, v in echo.items() if v is not None})
    if result.usage is not None:
        body["usage"] = usage_payload(result.usage)
    return body


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

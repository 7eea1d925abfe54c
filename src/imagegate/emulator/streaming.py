"""Partial-image streaming (§3.4): ``text/event-stream`` with ``image_generation.partial_image``
events (``partial_image_index`` 0..partial_images-1) and one ``image_generation.completed`` event
per image carrying ``usage``; edits use the ``image_edit.`` prefix. Every event carries
``b64_json``, ``created_at``, ``size``, ``quality``, ``background`` and ``output_format``.

The latency is spread evenly over the events. With n > 1 each image gets its partial events and
its completed event in turn, and ``usage`` (covering all images) rides on every completed event
[I: the reference shows n=1 only].

The SSE framing is three lines (``event:``, ``data:``, blank line), so no SSE library is used.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from imagegate.emulator.render import RenderSpec


def sse(event: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def image_events(
    *,
    prefix: str,
    specs: list[RenderSpec],
    partials: int,
    meta: dict[str, str],
    usage: dict[str, Any] | None,
    final: Callable[[RenderSpec], Awaitable[str]],
    partial: Callable[[RenderSpec, int], Awaitable[str]],
    latency_s: float,
    sleep: Callable[[float], Awaitable[None]],
) -> AsyncIterator[bytes]:
    steps = max(1, len(specs) * (partials + 1))
    pause = latency_s / steps
    for spec in specs:
        for index in range(partials):
            if pause > 0:
                await sleep(pause)
            event = f"{prefix}.partial_image"
            yield sse(
                event,
                {
                    "type": event,
                    "b64_json": await partial(spec, index),
                    "created_at": int(time.time()),
                    **meta,
                    "partial_image_index": index,
                },
            )
        if pause > 0:
            await sleep(pause)
        event = f"{prefix}.completed"
        payload: dict[str, Any] = {
            "type": event,
            "b64_json": await final(spec),
            "created_at": int(time.time()),
            **meta,
        }
        if usage is not None:
            payload["usage"] = usage
        yield sse(event, payload)

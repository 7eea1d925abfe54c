"""Server-sent events for partial-image streaming, in OpenAI's event shapes.

::

    event: image_generation.partial_image
    data: {"type":"image_generation.partial_image","b64_json":"...","partial_image_index":0,...}

    event: image_generation.completed
    data: {"type":"image_generation.completed","b64_json":"...","usage":{...},...}

Edits use ``image_edit.partial_image`` / ``image_edit.completed``. A failure after the stream has
started cannot change the status any more, so it is sent as ``event: error`` with the same
``{"error": {...}}`` body the non-streaming routes use; the openai SDK raises it as an APIError.

Hand-written rather than a library (sse-starlette) because the format is four lines and the
payloads are pre-encoded bytes: one ``orjson.dumps`` per event, no re-encoding of the base64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["SSE_HEADERS", "encode_event", "error_event", "event_prefix"]

SSE_HEADERS: Mapping[str, str] = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx and friends must not buffer a stream
}


def event_prefix(operation: str) -> str:
    """``image_generation`` for generations, ``image_edit`` for edits."""
    return "image_edit" if operation == "edit" else "image_generation"


def encode_event(event: str, payload: Mapping[str, Any]) -> bytes:
    """One SSE frame. ``type`` repeats the event name inside the data, as OpenAI does."""
    data = orjson.dumps({"type": event, **payload})
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def error_event(body: bytes) -> bytes:
    """An ``error`` frame from an already rendered ``{"error": {...}}`` body."""
    error = orjson.loads(body).get("error", {})
    return encode_event("error", {"error": error})

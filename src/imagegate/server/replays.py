"""The answers kept for ``Idempotency-Key`` replays, and what makes two requests "the same".

``ImageService`` decides when a key's answer is final (``server.service``); this module keeps it:
the body in the image store (content-addressed), or in memory for a gateway without one (the
last ``REPLAY_MEMORY_ENTRIES``, this process only), with the headers worth replaying, its status,
and the stored images a ``response_format=url`` answer points at, so a replay signs their URLs
anew (the first answer's expire ``url_ttl_s`` after it; a key's replays last 24 h). An answer
that is gone is a final ``ResponseGone``: the request is never run again under its key.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from imagegate.errors import NotFound, ResponseGone
from imagegate.ports import BlobRef, BlobStore
from imagegate.server.parsing import ParsedCall
from imagegate.types import EditRequest

__all__ = ["REPLAY_MEMORY_ENTRIES", "Replays", "fingerprint"]

REPLAY_MEMORY_ENTRIES = 256
_REPLAYED_HEADERS = ("x-imagegate-", "x-should-retry", "retry-after")


class Replays:
    """Keeps answers (``remember``) and gives them back (``replay``). ``url(ref, origin)`` signs a
    stored image's URL from now."""

    def __init__(self, blobs: BlobStore | None, url: Callable[[BlobRef, str], str]) -> None:
        self._blobs = blobs
        self._url = url
        self._memory: OrderedDict[str, bytes] = OrderedDict()

    async def remember(self, response: Response, images: tuple[BlobRef, ...] = ()) -> str:
        """Keep ``response``; ``images`` are the stored images its URLs point at, in order. The
        reference to give ``replay`` (what the idempotency store keeps for the key)."""
        body = bytes(response.body)
        headers = {k: v for k, v in response.headers.items() if k.startswith(_REPLAYED_HEADERS)}
        meta: dict[str, Any] = {"headers": headers}
        if response.status_code != 200:
            meta["status"] = response.status_code
        if images:
            meta["images"] = [[ref.digest, ref.size, ref.content_type] for ref in images]
        if self._blobs is not None:
            ref = await self._blobs.put(body, "application/json")
            return orjson.dumps({"blob": ref.digest, **meta}).decode()
        key = hashlib.sha256(body).hexdigest()
        self._memory[key] = body
        while len(self._memory) > REPLAY_MEMORY_ENTRIES:
            self._memory.popitem(last=False)
        return orjson.dumps({"mem": key, **meta}).decode()

    async def replay(self, ref: str, origin: str, idem_key: str) -> Response:
        meta = orjson.loads(ref)
        body: bytes | None = None
        if "blob" in meta and self._blobs is not None:
            with contextlib.suppress(NotFound):
                body = await self._blobs.get(meta["blob"])
        elif meta.get("mem") in self._memory:
            body = self._memory[meta["mem"]]
        if body is None:
            # Gone for good (deleted, or kept by a process that is gone): a retry cannot bring it
            # back, and running the request again could bill it twice. Final, not "retry later".
            raise ResponseGone(
                f"the answer to the request with Idempotency-Key {idem_key!r} is no longer kept, so "
                "it cannot be replayed, and the request is not run again (it has already run and may "
                "have been billed). To run it again, send it with a new Idempotency-Key."
            )
        if meta.get("images"):
            body = self._signed_anew(body, [BlobRef(*image) for image in meta["images"]], origin)
        headers = {**meta.get("headers", {}), "x-imagegate-idempotent-replay": "true"}
        return Response(
            body, status_code=meta.get("status", 200), media_type="application/json", headers=headers
        )

    def _signed_anew(self, body: bytes, images: list[BlobRef], origin: str) -> bytes:
        """A stored ``response_format=url`` answer with each image's URL signed from now."""
        payload = orjson.loads(body)
        for item, image in zip(payload["data"], images, strict=True):
            item["url"] = self._url(image, origin)
        return orjson.dumps(payload)


def fingerprint(call: ParsedCall) -> str:
    """What makes two requests "the same" for an Idempotency-Key: every parameter, the prompt
    and the bytes of each uploaded image (hashed once, only when the header is present)."""
    request = call.request
    digest = hashlib.sha256()
    digest.update(orjson.dumps([request.operation, request.model, request.prompt, request.params()]))
    digest.update(orjson.dumps([call.stream, call.response_format, repr(call.options)]))
    if isinstance(request, EditRequest):
        for image in (*request.images, *((request.mask,) if request.mask else ())):
            digest.update(hashlib.sha256(image.data).digest())
    return digest.hexdigest()

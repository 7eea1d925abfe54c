"""``GET /v1/files/images/<sha256>.<ext>?expires=..&sig=..``: images kept for ``response_format=url``.

The URL is minted and checked by the local blob store (``stores.blobs.LocalBlobStore``, HMAC over
digest, extension and expiry); the signature is the capability, so no API key is needed and an
``<img src>`` works. Served as raw bytes (never gzipped), privately cacheable until the URL
expires and no longer. With a cloud blob store, image URLs point at the cloud and this route
answers 404.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from imagegate.errors import NotFound
from imagegate.server.state import gateway_state
from imagegate.stores.blobs import LocalBlobStore

__all__ = ["IMAGE_ROUTE", "router"]

router = APIRouter(tags=["files"])

IMAGE_ROUTE = "/v1/files/images"


@router.get(
    IMAGE_ROUTE + "/{name}",
    summary="An image stored by the gateway, by signed, expiring URL.",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
async def get_image(
    request: Request, name: str, expires: str = Query(max_length=20), sig: str = Query(max_length=128)
) -> Response:
    service = gateway_state(request).images
    blobs = service.blobs if service is not None else None
    if service is None or not isinstance(blobs, LocalBlobStore):
        raise NotFound("this gateway serves no stored images")
    now = service.governance.now()
    digest, content_type = blobs.verify(name, expires, sig, now)
    data = await blobs.get(digest)
    # a cached copy must not outlive the URL: cacheable for what is left of its lifetime
    max_age = max(0, int(expires) - math.ceil(now.timestamp()))
    return Response(
        data,
        media_type=content_type,
        headers={"cache-control": f"private, max-age={max_age}, immutable", "content-length": str(len(data))},
    )

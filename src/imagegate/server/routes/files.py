"""``GET /v1/files/images/<sha256>.<ext>?exp=..&sig=..``: images stored for ``response_format=url``.

The signature is the capability: no API key is needed, so an ``<img src>`` works. Served as raw
bytes with a long private cache lifetime (the name is the content hash) and never gzipped.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from imagegate.errors import NotFound
from imagegate.server.state import gateway_state

__all__ = ["router"]

router = APIRouter(tags=["files"])


@router.get(
    "/v1/files/images/{name}",
    summary="An image stored by the gateway, by signed, expiring URL.",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
async def get_image(
    request: Request, name: str, exp: str = Query(max_length=20), sig: str = Query(max_length=64)
) -> Response:
    service = gateway_state(request).images
    if service is None or service.blobs is None:
        raise NotFound("this gateway stores no images")
    digest, content_type = service.signer.verify(name, exp, sig, service.clock())
    try:
        data = await service.blobs.get(digest)
    except (KeyError, FileNotFoundError):
        raise NotFound("the image is no longer stored") from None
    return Response(
        data,
        media_type=content_type,
        headers={"cache-control": "private, max-age=3600, immutable", "content-length": str(len(data))},
    )

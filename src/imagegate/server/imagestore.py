"""Images kept by the gateway for ``response_format=url``: a content-addressed local directory.

A ``BlobStore`` port adapter for the embedded default (one machine): ``<root>/ab/cdef...`` named by
the SHA-256 of the bytes, written once (a second put of the same image is free) through a temp
file and an atomic rename, so a reader never sees half an image. File I/O runs in a worker thread
to keep multi-megabyte writes off the event loop. URLs are signed by ``server.urls.UrlSigner``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import anyio

from imagegate.errors import NotFound
from imagegate.ports import BlobRef
from imagegate.server.urls import UrlSigner

__all__ = ["DirectoryBlobStore"]


class DirectoryBlobStore:
    def __init__(self, root: Path, *, signer: UrlSigner | None = None) -> None:
        self.root = root
        self.signer = signer

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise NotFound("no such image")
        return self.root / digest[:2] / digest[2:]

    def _write(self, data: bytes, digest: str) -> None:
        path = self._path(digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, data: bytes, content_type: str) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        await anyio.to_thread.run_sync(self._write, data, digest)
        return BlobRef(digest=digest, size=len(data), content_type=content_type)

    async def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("the image is no longer stored") from None

    def signed_url(self, ref: BlobRef, now: datetime, *, ttl_s: float) -> str:
        """A root-relative signed URL (``/v1/files/images/...``), valid for ``ttl_s``."""
        if self.signer is None:
            raise NotFound("this image store has no URL signer")
        signer = replace(self.signer, ttl_s=ttl_s)
        return signer.url(ref.digest, ref.content_type, now.timestamp(), origin="")

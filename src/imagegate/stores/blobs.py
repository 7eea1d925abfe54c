"""Image bytes in a local, content-addressed directory, served by signed expiring URLs.

Files are named by the SHA-256 of their bytes (``ab/cd/abcd…``), so the same image stored twice
takes the space once and a name can never point at other bytes. Writes go to a temporary file
and are renamed into place (atomic on POSIX), so a reader never sees half an image. Disk I/O
runs in a worker thread to keep the event loop free.

``response_format=url`` hands out ``{base_url}/{digest}.{ext}?expires=<unix>&sig=<hmac>``: an
HMAC-SHA256 (secret from config) over the digest, the extension and the expiry. Anyone holding
the URL can fetch the image until it expires, nobody can forge or extend one, and the gateway
checks it without any lookup (:meth:`LocalBlobStore.verify`). Azure Blob Storage / S3 replace
this adapter at scale behind the same :class:`imagegate.ports.BlobStore` port.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from imagegate.errors import NotFound, PermissionDenied
from imagegate.ports import BlobRef

__all__ = ["LocalBlobStore"]

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_EXPIRES = re.compile(r"^[0-9]{1,20}$", re.ASCII)
_EXT_FOR_TYPE = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
_TYPE_FOR_EXT = {v: k for k, v in _EXT_FOR_TYPE.items()} | {"jpg": "image/jpeg"}


class LocalBlobStore:
    def __init__(self, root: Path, *, url_secret: bytes, base_url: str = "/v1/blobs") -> None:
        if len(url_secret) < 16:
            raise ValueError("the blob URL signing secret must be at least 16 bytes")
        self._root = Path(root)
        self._secret = url_secret
        self._base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self._root)!r})"

    def path_for(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise NotFound(f"no image {digest[:80]!r}")
        return self._root / digest[:2] / digest[2:4] / digest

    async def put(self, data: bytes, content_type: str) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, self.path_for(digest), data)
        return BlobRef(digest=digest, size=len(data), content_type=content_type)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
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

    async def get(self, digest: str) -> bytes:
        path = self.path_for(digest)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"no image {digest!r}") from None

    def _sign(self, digest: str, ext: str, expires: int) -> str:
        msg = f"{digest}.{ext}:{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def signed_url(self, ref: BlobRef, now: datetime, *, ttl_s: float) -> str:
        ext = _EXT_FOR_TYPE.get(ref.content_type, "bin")
        expires = int(now.timestamp() + ttl_s)
        sig = self._sign(ref.digest, ext, expires)
        return f"{self._base_url}/{ref.digest}.{ext}?expires={expires}&sig={sig}"

    def verify(self, name: str, expires: str, sig: str, now: datetime) -> tuple[str, str]:
        """Check a request for ``{digest}.{ext}``; returns (digest, content type) or raises.

        A forged or altered URL is PermissionDenied (403); an expired one too, saying so.
        """
        digest, _, ext = name.partition(".")
        # ASCII digits only: str.isdigit() is also true for "²" or "١", which int() refuses
        if not _DIGEST.match(digest) or not _EXPIRES.match(expires):
            raise NotFound(f"no image {name[:80]!r}")
        if not hmac.compare_digest(self._sign(digest, ext, int(expires)), sig):
            raise PermissionDenied("image URL signature is not valid")
        if int(expires) <= now.timestamp():
            raise PermissionDenied("image URL has expired; request the image again for a new URL")
        return digest, _TYPE_FOR_EXT.get(ext, "application/octet-stream")

    def verify_url(self, url: str, now: datetime) -> tuple[str, str]:
        """:meth:`verify` for a whole URL as produced by :meth:`signed_url`."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        name = parts.path.rsplit("/", 1)[-1]
        return self.verify(name, query.get("expires", [""])[0], query.get("sig", [""])[0], now)

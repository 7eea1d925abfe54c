"""Signed, expiring URLs for images the gateway stores (``response_format=url``).

``/v1/files/images/<sha256>.<ext>?exp=<unix>&sig=<hmac>``: the signature is HMAC-SHA256 over the
path and expiry with a server secret, so a URL cannot be forged, widened to another image, or
extended. Verification is constant-time. Hand-written (itsdangerous could do it) because it is
ten lines and keeps the URL format ours to document.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from imagegate.errors import NotFound, PermissionDenied

__all__ = ["EXTENSIONS", "UrlSigner"]

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
CONTENT_TYPES = {v: k for k, v in EXTENSIONS.items()}
_NAME = re.compile(r"^([0-9a-f]{64})\.(png|jpeg|webp)$")


@dataclass(frozen=True)
class UrlSigner:
    secret: bytes = field(repr=False)
    ttl_s: float = 3600.0
    base_url: str = ""  # "" → root-relative; set to the public origin behind a proxy

    def _sig(self, name: str, exp: int) -> str:
        mac = hmac.new(self.secret, f"{name}:{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")

    def url(self, digest: str, content_type: str, now_unix: float, origin: str) -> str:
        name = f"{digest}.{EXTENSIONS.get(content_type, 'png')}"
        exp = int(now_unix + self.ttl_s)
        base = self.base_url or origin
        return f"{base.rstrip('/')}/v1/files/images/{name}?exp={exp}&sig={self._sig(name, exp)}"

    def verify(self, name: str, exp: str, sig: str, now_unix: float) -> tuple[str, str]:
        """``(digest, content_type)`` when the URL is genuine and unexpired."""
        match = _NAME.match(name)
        if match is None or not exp.isdigit():
            raise NotFound("no such image")
        if not hmac.compare_digest(self._sig(name, int(exp)), sig):
            raise PermissionDenied("the image URL's signature is not valid")
        if int(exp) < now_unix:
            raise PermissionDenied("the image URL has expired; request the image again for a fresh URL")
        return match.group(1), CONTENT_TYPES[match.group(2)]

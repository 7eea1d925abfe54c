"""Content-addressed local blobs and their signed, expiring URLs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagegate.errors import NotFound, PermissionDenied
from imagegate.stores.blobs import LocalBlobStore

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100


def store(tmp_path: Path, secret: bytes = b"s" * 32) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", url_secret=secret, base_url="http://gw/v1/blobs/")


async def test_put_get_is_content_addressed(tmp_path: Path) -> None:
    s = store(tmp_path)
    ref = await s.put(PNG, "image/png")
    again = await s.put(PNG, "image/png")
    assert ref == again and ref.digest == hashlib.sha256(PNG).hexdigest() and ref.size == len(PNG)
    assert await s.get(ref.digest) == PNG
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert files == [tmp_path / "blobs" / ref.digest[:2] / ref.digest[2:4] / ref.digest]


async def test_missing_and_malformed_digests_are_not_found(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(NotFound):
        await s.get("0" * 64)
    with pytest.raises(NotFound):
        await s.get("../../etc/passwd")


async def test_signed_url_round_trip_and_expiry(tmp_path: Path) -> None:
    s = store(tmp_path)
    ref = await s.put(PNG, "image/png")
    url = s.signed_url(ref, NOW, ttl_s=3600)
    assert url.startswith(f"http://gw/v1/blobs/{ref.digest}.png?expires=")
    assert s.verify_url(url, NOW + timedelta(minutes=59)) == (ref.digest, "image/png")
    with pytest.raises(PermissionDenied, match="expired"):
        s.verify_url(url, NOW + timedelta(hours=1))


async def test_tampered_urls_are_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    ref = await s.put(PNG, "image/png")
    url = s.signed_url(ref, NOW, ttl_s=60)
    expires = url.split("expires=")[1].split("&")[0]
    longer = url.replace(f"expires={expires}", f"expires={int(expires) + 86400}")
    with pytest.raises(PermissionDenied, match="signature"):
        s.verify_url(longer, NOW)
    other = await s.put(b"other", "image/png")
    swapped = url.replace(ref.digest, other.digest)
    with pytest.raises(PermissionDenied, match="signature"):
        s.verify_url(swapped, NOW)
    with pytest.raises(PermissionDenied, match="signature"):
        store(tmp_path, secret=b"t" * 32).verify_url(url, NOW)  # another gateway's secret


def test_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        LocalBlobStore(tmp_path, url_secret=b"short")
    assert "s" * 32 not in repr(store(tmp_path))

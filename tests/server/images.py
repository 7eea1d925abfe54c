"""Tiny real images for tests (Pillow-made, a few hundred bytes)."""

from __future__ import annotations

import io

from PIL import Image


def png(width: int = 64, height: int = 64, *, mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    colour = {"RGBA": (200, 30, 30, 255), "RGB": (200, 30, 30), "1": 1}[mode]
    Image.new(mode, (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()

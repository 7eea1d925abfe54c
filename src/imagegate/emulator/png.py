"""A small PNG writer that compresses an image in bands of rows and reuses the compressed bytes of
bands it has seen before.

Why hand-written: the emulator's images must weigh what real ones weigh (a 1024x1024 PNG of
1-2 MB), which means noise that deflate cannot squeeze, and deflating 3 MB of noise costs ~35 ms
per image even at level 1 (Pillow's encoder, which also tries every row filter, ~90 ms). Most of
an emulator image is background: the same noise band on the same colour. Deflate streams can be
cut into independently compressed pieces with ``Z_FULL_FLUSH`` (each piece starts with an empty
dictionary and ends byte-aligned), so a background band compressed once can be spliced into every
later image; only the bands carrying text are compressed per request. Pillow cannot do that.

The output is a standard PNG (8-bit RGB or RGBA, filter type 0 on every row), read back by Pillow
and any decoder.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence

from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final, fixed-Huffman block holding no data
_COLOR_TYPE = {"RGB": 2, "RGBA": 6}


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def _filtered_rows(raw: bytes, stride: int) -> bytes:
    """Prefix every row with filter byte 0 (None)."""
    return b"".join(b"\x00" + raw[i : i + stride] for i in range(0, len(raw), stride))


class BandCache:
    """LRU of compressed bands, bounded by total bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[bytes, int, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bytes, int, int] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Hashable, value: tuple[bytes, int, int]) -> None:
        if len(value[0]) > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += len(value[0])
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old[0])


def _compress_band(rows: bytes, level: int) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    return comp.compress(rows) + comp.flush(zlib.Z_FULL_FLUSH)


def encode_png(
    img: Image.Image,
    *,
    band_rows: int = 64,
    band_keys: Sequence[Hashable | None] | None = None,
    cache: BandCache | None = None,
    level: int = 1,
) -> bytes:
    """Encode ``img`` (RGB or RGBA). ``band_keys[i]`` names band i's content when it is known to
    repeat (None: compress afresh); equal keys must mean equal pixels."""
    if img.mode not in _COLOR_TYPE:
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    w, h = img.size
    stride = w * len(img.getbands())
    raw = img.tobytes()
    pieces: list[bytes] = []
    adler = 1
    band_bytes = stride * band_rows
    for index, start in enumerate(range(0, len(raw), band_bytes)):
        key = band_keys[index] if band_keys is not None and index < len(band_keys) else None
        cached = cache.get(key) if (cache is not None and key is not None) else None
        if cached is not None:
            data, band_adler, length = cached
            adler = _adler_combine(adler, band_adler, length)
            pieces.append(data)
            continue
        rows = _filtered_rows(raw[start : start + band_bytes], stride)
        data = _compress_band(rows, level)
        band_adler = zlib.adler32(rows)
        adler = _adler_combine(adler, band_adler, len(rows))
        if cache is not None and key is not None:
            cache.put(key, (data, band_adler, len(rows)))
        pieces.append(data)
    idat = b"\x78\x01" + b"".join(pieces) + _FINAL_EMPTY_BLOCK + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[img.mode], 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


_MOD_ADLER = 65521


def _adler_combine(adler1: int, adler2: int, len2: int) -> int:
    """zlib's adler32_combine: the checksum of A+B from those of A and B and len(B)."""
    rem = len2 % _MOD_ADLER
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _MOD_ADLER
    sum1 += (adler2 & 0xFFFF) + _MOD_ADLER - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _MOD_ADLER - rem
    sum1 %= _MOD_ADLER
    sum2 %= _MOD_ADLER
    return (sum2 << 16) | sum1

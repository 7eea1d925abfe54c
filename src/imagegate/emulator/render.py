"""Real images for emulated responses: exactly the requested size and format, deterministic for
the same request, showing the prompt in large dark letters that OCR (tesseract) reads, on a light
background coloured by the prompt.

``image_bytes: realistic`` adds low-amplitude noise (3 bits per channel) that deflate cannot
remove, so a 1024x1024 PNG weighs ~1.6 MB like a real gpt-image output; ``small`` leaves it out
(~20 KB). Rendering is cheap on purpose, because the emulator must never be the bottleneck of a
gateway benchmark: noise comes from one precomputed strip, background images are kept per
(size, colour), PNG background bands are compressed once (png.py), and finished images are kept in
an LRU keyed by the request, so a repeated request costs a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageChops, ImageDraw, ImageFont

from imagegate.emulator.png import BandCache, encode_png

Spans = tuple[tuple[int, int], ...]
STRIP_W = 3840
BAND = 16
_NOISE_MASK = 0x07

# Light colours: dark text on them binarises cleanly for OCR.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (214, 228, 240),
    (240, 226, 208),
    (222, 238, 216),
    (238, 220, 232),
    (236, 236, 214),
    (216, 232, 232),
    (228, 222, 244),
    (244, 232, 222),
)


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """Everything that decides the pixels and bytes of one output image."""

    prompt: str
    width: int
    height: int
    output_format: str = "png"
    compression: int = 100
    transparent: bool = False
    realistic: bool = True
    index: int = 0


@lru_cache(maxsize=4)
def _noise_strip(seed: int) -> Image.Image:
    raw = random.Random(seed).randbytes(STRIP_W * BAND * 3)
    table = bytes(b & _NOISE_MASK for b in range(256))
    return Image.frombytes("RGB", (STRIP_W, BAND), raw.translate(table))


def _strip_offset(band: int, width: int) -> int:
    span = STRIP_W - width + 1
    return (band * 613 + 7) % span if span > 1 else 0


@lru_cache(maxsize=512)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _colour_index(spec: RenderSpec) -> int:
    digest = hashlib.blake2b(f"{spec.prompt}\x00{spec.index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % len(PALETTE)


def _wrap(
    text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_w: int, max_lines: int
) -> list[str]:
    words = " ".join(text.split())[:400].split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= max_w or not current:
            current = candidate
            continue
        lines.append(current)
        current = word
        if len(lines) == max_lines:
            break
    if len(lines) < max_lines and current:
        lines.append(current)
    # Hard-cut any single word wider than the frame.
    return [_fit(line, font, max_w) for line in lines[:max_lines]]


def _fit(line: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_w: int) -> str:
    while len(line) > 1 and font.getlength(line) > max_w:
        line = line[:-1]
    return line


def _weight(img: Image.Image) -> int:
    return img.width * img.height * len(img.getbands())


class Renderer:
    """Renders and caches images. Thread-safe: the app renders cache misses in worker threads
    (:meth:`b64_async`, :meth:`memo_async`) so a slow 4K render never holds up the event loop —
    a 429 or a cache hit must answer at once — and Pillow and zlib release the GIL while they
    work. Two threads may render the same key at once; both produce the same bytes."""

    def __init__(self, *, seed: int = 0, cache_bytes: int = 256 * 1024 * 1024) -> None:
        self.seed = seed
        self.cache_bytes = cache_bytes
        self._done: OrderedDict[Hashable, str] = OrderedDict()
        self._done_bytes = 0
        self._backgrounds: OrderedDict[tuple[str, int, int, int, bool], Image.Image] = OrderedDict()
        self._background_bytes = 0
        self.max_background_bytes = max(cache_bytes // 4, 32 * 1024 * 1024)
        self._bands = BandCache(max(cache_bytes // 4, 1))
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # ---------------------------------------------------------------- public

    def b64(self, spec: RenderSpec) -> str:
        """The base64 of the encoded image for ``spec`` (cached)."""

        def produce() -> str:
            img, text_rows = self.picture(spec)
            return base64.b64encode(self.encode(img, spec, text_rows=text_rows)).decode("ascii")

        return self.memo(spec, produce)

    def memo(self, key: Hashable, produce: Callable[[], str]) -> str:
        """``produce()``, remembered under ``key`` in the byte-bounded LRU."""
        cached = self.lookup(key)
        if cached is not None:
            return cached
        out = produce()
        self._remember(key, out)
        return out

    async def memo_async(self, key: Hashable, produce: Callable[[], str]) -> str:
        """:meth:`memo`, with a miss produced in a worker thread."""
        cached = self.lookup(key)
        if cached is not None:
            return cached
        out = await asyncio.to_thread(produce)
        self._remember(key, out)
        return out

    async def b64_async(self, spec: RenderSpec) -> str:
        cached = self.lookup(spec)
        return cached if cached is not None else await asyncio.to_thread(self.b64, spec)

    def lookup(self, key: Hashable) -> str | None:
        with self._lock:
            cached = self._done.get(key)
            if cached is not None:
                self._done.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return cached

    def picture(self, spec: RenderSpec) -> tuple[Image.Image, Spans]:
        """The PIL image for ``spec`` and the spans of pixel rows its text covers."""
        colour = _colour_index(spec)
        img = self._background(spec, colour).copy()
        return img, self._draw_text(img, spec)

    def encode(self, img: Image.Image, spec: RenderSpec, *, text_rows: Spans | None = None) -> bytes:
        """Encode in the spec's format. With ``text_rows``, PNG background bands are reused."""
        fmt = spec.output_format
        if fmt == "png":
            keys = self._band_keys(spec, text_rows) if text_rows is not None else None
            return encode_png(img, band_rows=BAND, band_keys=keys, cache=self._bands)
        buf = io.BytesIO()
        quality = max(1, min(95, spec.compression))
        if fmt == "jpeg":
            img.convert("RGB").save(buf, "JPEG", quality=quality)
        else:
            img.save(buf, "WEBP", quality=quality, method=0)
        return buf.getvalue()

    def partial(self, spec: RenderSpec, step: int, steps: int) -> str:
        """Base64 of partial image ``step`` (0-based) of ``steps``: a blocky preview."""
        img, _ = self.picture(spec)
        factor = 2 ** max(1, 5 - step - (3 - steps))
        small = img.resize(
            (max(1, spec.width // factor), max(1, spec.height // factor)), Image.Resampling.BOX
        )
        preview = small.resize((spec.width, spec.height), Image.Resampling.NEAREST)
        return base64.b64encode(self.encode(preview, spec)).decode("ascii")

    # -------------------------------------------------------------- internals

    def _remember(self, key: Hashable, value: str) -> None:
        if len(value) > self.cache_bytes:
            return
        with self._lock:
            if key in self._done:
                return
            self._done[key] = value
            self._done_bytes += len(value)
            while self._done_bytes > self.cache_bytes:
                _, old = self._done.popitem(last=False)
                self._done_bytes -= len(old)

    def _background(self, spec: RenderSpec, colour: int) -> Image.Image:
        mode = "RGBA" if spec.transparent else "RGB"
        key = (mode, spec.width, spec.height, colour, spec.realistic)
        with self._lock:
            bg = self._backgrounds.get(key)
            if bg is not None:
                self._backgrounds.move_to_end(key)
                return bg
        base = Image.new("RGB", (spec.width, spec.height), PALETTE[colour])
        if spec.realistic:
            strip = _noise_strip(self.seed)
            noise = Image.new("RGB", (spec.width, spec.height))
            for band, top in enumerate(range(0, spec.height, BAND)):
                off = _strip_offset(band, spec.width)
                noise.paste(strip.crop((off, 0, off + spec.width, BAND)), (0, top))
            base = ImageChops.subtract(base, noise)
        if spec.transparent:
            base.putalpha(0)
        with self._lock:
            if key not in self._backgrounds:
                self._backgrounds[key] = base
                self._background_bytes += _weight(base)
            while self._background_bytes > self.max_background_bytes and len(self._backgrounds) > 1:
                _, old = self._backgrounds.popitem(last=False)
                self._background_bytes -= _weight(old)
        return base

    def _draw_text(self, img: Image.Image, spec: RenderSpec) -> Spans:
        w, h = img.size
        size = max(10, min(160, min(w, h) // 14))
        font = _font(size)
        margin = max(4, w // 16)
        line_h = int(size * 1.3)
        max_lines = max(1, min(6, (h - 2 * margin) // line_h))
        lines = _wrap(spec.prompt, font, w - 2 * margin, max_lines)
        top = max(0, (h - line_h * len(lines)) // 2)
        draw = ImageDraw.Draw(img)
        fill = (20, 20, 28, 255) if img.mode == "RGBA" else (20, 20, 28)
        for i, line in enumerate(lines):
            draw.text((margin, top + i * line_h), line, fill=fill, font=font)
        spans = [(top, min(h, top + line_h * len(lines) + size // 2))]
        # A small footer says what this is, so nobody mistakes an emulator image for a real one.
        small = max(8, size // 3)
        foot_y = h - int(small * 1.6)
        if foot_y > spans[0][1]:
            muted = (90, 90, 100, 255) if img.mode == "RGBA" else (90, 90, 100)
            footer = _fit(
                f"imagegate emulator · {w}x{h} · image {spec.index + 1}", _font(small), w - 2 * margin
            )
            draw.text((margin, foot_y), footer, fill=muted, font=_font(small))
            spans.append((foot_y, min(h, foot_y + int(small * 1.4))))
        return tuple(spans)

    def _band_keys(self, spec: RenderSpec, text_rows: Spans) -> list[tuple[object, ...] | None]:
        colour = _colour_index(spec)
        keys: list[tuple[object, ...] | None] = []
        for band, top in enumerate(range(0, spec.height, BAND)):
            bottom = min(spec.height, top + BAND)
            if any(top < end and bottom > start for start, end in text_rows):
                keys.append(None)
                continue
            keys.append(
                (
                    spec.transparent,
                    spec.width,
                    bottom - top,
                    colour,
                    spec.realistic,
                    _strip_offset(band, spec.width),
                )
            )
        return keys

"""Value objects that travel along the request path: requests, images, usage, cost, results.

They are frozen dataclasses: a stage that changes a request makes a new one
(``dataclasses.replace``), so what was validated is what is sent. Image bytes are kept out of
``repr`` (an image in a log line is both a leak and megabytes of noise).
"""

from __future__ import annotations

import binascii
import functools
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Literal

__all__ = [
    "AttemptRecord",
    "Change",
    "Cost",
    "EditRequest",
    "GeneratedImage",
    "ImageRequest",
    "ImageResult",
    "InputImage",
    "PartialImage",
    "Usage",
]

Operation = Literal["generate", "edit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRequest:
    """A generation request in OpenAI's parameter names. ``None`` means "not given" (the
    upstream default applies, and nothing is sent for it)."""

    prompt: str = field(repr=False)
    model: str | None = None
    n: int = 1
    size: str | None = None
    quality: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    background: str | None = None
    moderation: str | None = None
    style: str | None = None
    response_format: str | None = None
    user: str | None = None
    partial_images: int | None = None

    @property
    def operation(self) -> Operation:
        return "generate"

    def params(self) -> dict[str, object]:
        """The optional parameters that were given, by wire name (prompt and model excluded)."""
        names = (
            "n",
            "size",
            "quality",
            "output_format",
            "output_compression",
            "background",
            "moderation",
            "style",
            "response_format",
            "user",
            "partial_images",
        )
        out: dict[str, object] = {}
        for name in names:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class InputImage:
    """An image (or mask) uploaded for an edit. ``data`` is the file exactly as given."""

    data: bytes = field(repr=False)
    filename: str = "image.png"
    content_type: str = "image/png"

    def __repr__(self) -> str:
        shown = f"filename={self.filename!r}, content_type={self.content_type!r}"
        return f"InputImage({shown}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True, kw_only=True)
class EditRequest(ImageRequest):
    """An edit: one or more input images, an optional mask (transparent pixels mark the area to
    change; it applies to the first image) and the generation parameters."""

    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    input_fidelity: str | None = None

    @property
    def operation(self) -> Operation:
        return "edit"

    def params(self) -> dict[str, object]:
        out = ImageRequest.params(self)
        if self.input_fidelity is not None:
            out["input_fidelity"] = self.input_fidelity
        return out


@dataclass(frozen=True, slots=True)
class Change:
    """One parameter changed by translation: ``new is None`` means the parameter was dropped."""

    field: str
    old: object
    new: object
    reason: str

    def __str__(self) -> str:
        if self.new is None:
            return f"{self.field}={self.old!r} dropped: {self.reason}"
        return f"{self.field}: {self.old!r} -> {self.new!r} ({self.reason})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token usage as billed (token-priced models; per-image-priced models report none)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int | None = None
    output_text_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cost:
    """Cost in USD. ``estimated`` is True when it was computed from tables, not billed usage."""

    usd: Decimal
    source: str
    estimated: bool = False
    per_image_usd: Decimal | None = None

    def rounded(self, places: int = 3) -> Decimal:
        return self.usd.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """What one upstream attempt did. ``may_be_billed`` is True when the request was sent and
    the outcome is unknown or succeeded."""

    number: int
    deployment: str
    outcome: str  # "ok" or the error code of the imagegate error it became
    status_code: int | None = None
    latency_s: float = 0.0
    retry_after_s: float | None = None
    delay_s: float = 0.0  # how long the loop waited after this attempt before the next one
    may_be_billed: bool = False
    request_id: str | None = None
    remaining_requests: int | None = None  # x-ratelimit-remaining-requests, when the response had it
    queued_s: float = 0.0  # how long routing held this attempt back, waiting for quota or a breaker
    # what a successful attempt made and cost (set by the pipeline's cost stage; None: not priced)
    images: int | None = None
    cost_usd: Decimal | None = None


def _png_size(prefix: bytes) -> tuple[int | None, int | None]:
    """A PNG's size from its IHDR chunk, which the format puts first (PNG spec 5.2, 11.2.2):
    the gpt-image default, read on every response without opening Pillow."""
    if prefix.startswith(b"\x89PNG\r\n\x1a\n") and prefix[12:16] == b"IHDR" and len(prefix) >= 24:
        return int.from_bytes(prefix[16:20], "big"), int.from_bytes(prefix[20:24], "big")
    return None, None


def _size_of(prefix: bytes) -> tuple[int | None, int | None]:
    """Width and height from the first bytes of an image; ``(None, None)`` when they do not
    reach the frame header (or the bytes are not an image we can read)."""
    if not prefix:
        return None, None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(prefix)) as img:
            width, height = img.size
            return width, height
    except Exception:  # a header we cannot read leaves the size unknown, not an error
        return None, None


def _sniff_format(prefix: bytes) -> str | None:
    if prefix.startswith(b"\x89PNG"):
        return "png"
    if prefix.startswith(b"\xff\xd8"):
        return "jpeg"
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "webp"
    return None


Base64 = bytes | memoryview
"""Base64 text as ASCII bytes: a ``memoryview`` when it is a slice of the upstream body."""

_HEAD_B64_PNG = 44  # a PNG's signature and IHDR chunk: 33 bytes, read without Pillow
_HEAD_B64 = 16 * 1024  # base64 characters decoded to read the header (12 KB of image)
_HEAD_B64_MORE = 256 * 1024  # a JPEG with large EXIF/ICC segments before its frame header


@dataclass(frozen=True, kw_only=True)
class GeneratedImage:
    """One generated image. The upstream base64 is kept exactly as received, as ASCII bytes
    (``b64``; on the gateway's path a zero-copy view into the upstream body), so the gateway
    can pass it on without decoding, re-encoding or copying it. ``b64_json`` (text) and
    ``data`` (the decoded image) are made from it on first use."""

    b64: Base64 | None = field(default=None, repr=False)
    url: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    revised_prompt: str | None = field(default=None, repr=False)
    model: str | None = None  # the catalog model that made this image (set on every result)
    deployment: str | None = None  # the deployment that made it

    @functools.cached_property
    def b64_json(self) -> str | None:
        """The base64 as text, as the OpenAI API spells it (a copy; the gateway never needs it)."""
        return None if self.b64 is None else str(self.b64, "utf-8", "replace")

    @functools.cached_property
    def data(self) -> bytes:
        if self.b64 is None:
            raise ValueError(f"this image was returned as a URL ({self.url}); download it to get bytes")
        return binascii.a2b_base64(self.b64)

    @classmethod
    def from_b64(cls, b64: str | Base64, *, revised_prompt: str | None = None) -> GeneratedImage:
        """Read format and dimensions from the image header without decoding the whole image."""
        raw: Base64 = b64.encode("ascii") if isinstance(b64, str) else b64
        fmt, width, height = None, None, None
        for length in (_HEAD_B64_PNG, _HEAD_B64, _HEAD_B64_MORE):
            head = raw[:length]
            try:
                prefix = binascii.a2b_base64(head[: len(head) - len(head) % 4])
            except (binascii.Error, ValueError):
                prefix = b""
            fmt = _sniff_format(prefix)
            width, height = _png_size(prefix) if length == _HEAD_B64_PNG else _size_of(prefix)
            if width is not None or len(head) < length:
                break
        return cls(b64=raw, format=fmt, width=width, height=height, revised_prompt=revised_prompt)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.data)
        return target


@dataclass(frozen=True, slots=True, kw_only=True)
class PartialImage:
    """A partial image streamed before the final result (``index`` counts from 0)."""

    index: int
    image: GeneratedImage


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageResult:
    """The outcome of one request: images plus where and how they were made and what they cost.

    ``model``/``deployment`` name what served the request (the first image's, when several
    calls served it); each image carries its own ``model``/``deployment``. ``changes`` lists
    every parameter imagegate changed (translation, a fallback model, an ``n`` split into
    several calls, a quality lowered for the deadline). ``fallback_from`` is the model the
    request asked for when another model served (some of) it; ``degraded`` says the quality was
    lowered to meet the deadline (only with ``degrade=True``)."""

    images: tuple[GeneratedImage, ...]
    model: str
    deployment: str
    region: str | None = None
    usage: Usage | None = None
    cost: Cost | None = None
    latency_s: float = 0.0
    request_id: str | None = None
    created: int | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    changes: tuple[Change, ...] = ()
    degraded: bool = False
    fallback_from: str | None = None

    @property
    def served_by(self) -> tuple[tuple[str, str], ...]:
        """The distinct ``(model, deployment)`` pairs that made the images, in image order."""
        seen: dict[tuple[str, str], None] = {}
        for image in self.images:
            seen[(image.model or self.model, image.deployment or self.deployment)] = None
        return tuple(seen) or ((self.model, self.deployment),)

    def save(self, path: str | Path) -> list[Path]:
        """Write the images. One image goes to ``path``; several go to ``stem-1.ext``,
        ``stem-2.ext``, ... next to it. Returns the paths written."""
        target = Path(path)
        if len(self.images) == 1:
            return [self.images[0].save(target)]
        return [
            image.save(target.with_name(f"{target.stem}-{i}{target.suffix}"))
            for i, image in enumerate(self.images, start=1)
        ]

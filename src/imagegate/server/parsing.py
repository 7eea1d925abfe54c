"""Request bodies → ``ImageRequest`` / ``EditRequest``, with types checked and limits enforced.

This module checks what HTTP can get wrong: the body is a JSON object, each field has the
right JSON type (or, in multipart, a string that parses as one), no unknown fields, the number
and size of uploaded files, and that each upload is an image whose header declares a sane pixel
count (the Pillow decompression-bomb guard: only the header is read, nothing is decoded).
Whether a value is allowed *for a model* (sizes, qualities, n) is the validation policy's job,
downstream; both raise ``InvalidRequest`` naming the field, the value and what is allowed.

JSON is parsed once with orjson. Multipart is parsed by Starlette (python-multipart), which
spools large files to disk, so a request holds about one copy of each image in memory.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from PIL import Image
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from imagegate.errors import InvalidRequest, PayloadTooLarge
from imagegate.server.options import NO_OPTIONS, RequestOptions
from imagegate.server.settings import ServerLimits
from imagegate.types import EditRequest, ImageRequest, InputImage

__all__ = ["ParsedCall", "parse_edit", "parse_generation"]

_STR_FIELDS = (
    "size",
    "quality",
    "output_format",
    "background",
    "moderation",
    "style",
    "response_format",
    "user",
)
_INT_FIELDS = ("n", "output_compression", "partial_images")
GENERATION_FIELDS = frozenset({"prompt", "model", "stream", *_STR_FIELDS, *_INT_FIELDS})
EDIT_FIELDS = frozenset({*GENERATION_FIELDS, "input_fidelity", "image", "image[]", "mask"})
_IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """A parsed request and the HTTP-level switches that are not image parameters."""

    request: ImageRequest
    stream: bool
    response_format: str | None  # what the *client* wants back: "url" | "b64_json" | None
    options: RequestOptions = NO_OPTIONS  # per-request overrides, from headers


def _allowed(fields: frozenset[str]) -> str:
    return "one of " + ", ".join(sorted(fields))


def _typed(raw: Mapping[str, Any], *, from_form: bool) -> dict[str, Any]:
    """Check and convert scalar fields; multipart sends every scalar as a string."""
    out: dict[str, Any] = {}
    for name in ("prompt", "model", "input_fidelity", *_STR_FIELDS):
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRequest.for_field(name, value, "a string")
        out[name] = value
    for name in _INT_FIELDS:
        value = raw.get(name)
        if value is None:
            continue
        if from_form and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise InvalidRequest.for_field(name, raw.get(name), "an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest.for_field(name, value, "an integer")
        out[name] = value
    stream = raw.get("stream")
    if from_form and isinstance(stream, str):
        lowered = stream.strip().lower()
        if lowered not in ("true", "false"):
            raise InvalidRequest.for_field("stream", stream, "true or false")
        stream = lowered == "true"
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest.for_field("stream", stream, "true or false")
    out["stream"] = bool(stream)
    if not out.get("prompt"):
        raise InvalidRequest("prompt is required and must not be empty", field="prompt", allowed="a string")
    return out


def _call(typed: dict[str, Any], model: str | None, **extra: Any) -> ParsedCall:
    stream = typed.pop("stream")
    response_format = typed.pop("response_format", None)
    if response_format not in (None, "url", "b64_json"):
        raise InvalidRequest.for_field("response_format", response_format, "one of url, b64_json")
    if stream and response_format == "url":
        raise InvalidRequest.for_field(
            "response_format",
            response_format,
            "b64_json with stream=true (streamed images are base64 events)",
        )
    if model is not None:
        typed["model"] = model
    cls = EditRequest if extra else ImageRequest
    return ParsedCall(request=cls(**typed, **extra), stream=stream, response_format=response_format)


def parse_generation(body: bytes, *, model: str | None = None) -> ParsedCall:
    """A JSON generation body. ``model`` (from an Azure deployment path) overrides the body's."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"the body is not valid JSON: {exc}", field="body", allowed="a JSON object"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidRequest.for_field("body", type(raw).__name__, "a JSON object")
    unknown = sorted(set(raw) - GENERATION_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"Unknown parameter: {unknown[0]!r}; known parameters: {', '.join(sorted(GENERATION_FIELDS))}",
            field=unknown[0],
            allowed=_allowed(GENERATION_FIELDS),
        )
    return _call(_typed(raw, from_form=False), model)


async def parse_edit(request: Request, limits: ServerLimits, *, model: str | None = None) -> ParsedCall:
    """A multipart edit: ``image`` or ``image[]`` (repeated), optional ``mask``, scalar fields."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequest.for_field("content-type", content_type, "multipart/form-data")
    try:
        form = await request.form(
            max_files=limits.max_images + 1,
            max_fields=len(EDIT_FIELDS) + 8,
            max_part_size=limits.max_json_body_bytes,
        )
    except (MultiPartException, HTTPException) as exc:  # Starlette wraps the first in the second
        raise _refused(str(getattr(exc, "message", None) or getattr(exc, "detail", "")), limits) from None
    try:
        return await _edit_from_form(form, limits, model)
    finally:
        await form.close()


def _refused(reason: str, limits: ServerLimits) -> InvalidRequest | PayloadTooLarge:
    """A limit python-multipart hit while parsing, in the gateway's terms (its own messages
    count the mask among the files and give sizes in KB)."""
    if reason.startswith("Too many files"):
        return InvalidRequest.for_field(
            "image",
            f"more than {limits.max_images + 1} files",
            f"at most {limits.max_images} images and one mask",
        )
    if "exceeded maximum size" in reason:
        return PayloadTooLarge(
            f"a text field of the form is larger than the {limits.max_json_body_bytes} bytes allowed"
        )
    return InvalidRequest(f"the multipart body was refused: {reason}", field="body")


async def _edit_from_form(form: FormData, limits: ServerLimits, model: str | None) -> ParsedCall:
    unknown = sorted(set(form.keys()) - EDIT_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"Unknown parameter: {unknown[0]!r}", field=unknown[0], allowed=_allowed(EDIT_FIELDS)
        )
    scalars: dict[str, Any] = {}
    for name in form:
        if name in ("image", "image[]", "mask"):
            continue
        values = form.getlist(name)
        if len(values) != 1 or not isinstance(values[0], str):
            raise InvalidRequest.for_field(name, f"{len(values)} values", "exactly one text value")
        scalars[name] = values[0]
    typed = _typed(scalars, from_form=True)
    uploads = [*form.getlist("image"), *form.getlist("image[]")]
    if not uploads:
        raise InvalidRequest(
            "image is required: send one file as 'image' or several as 'image[]'", field="image"
        )
    if len(uploads) > limits.max_images:
        raise InvalidRequest.for_field(
            "image", f"{len(uploads)} files", f"at most {limits.max_images} images"
        )
    first_size: tuple[int, int] | None = None
    images: list[InputImage] = []
    for index, upload in enumerate(uploads):
        field = f"image[{index}]" if len(uploads) > 1 else "image"
        image, dims = await _read_image(upload, field, limits.max_image_bytes, limits.max_image_pixels)
        first_size = first_size or dims
        images.append(image)
    mask: InputImage | None = None
    masks = form.getlist("mask")
    if len(masks) > 1:
        raise InvalidRequest.for_field("mask", f"{len(masks)} files", "at most one mask")
    if masks:
        mask, mask_dims = await _read_image(masks[0], "mask", limits.max_mask_bytes, limits.max_image_pixels)
        if mask.content_type != "image/png":
            raise InvalidRequest.for_field("mask", mask.content_type, "a PNG with an alpha channel")
        if first_size is not None and mask_dims != first_size:
            raise InvalidRequest.for_field(
                "mask",
                f"{mask_dims[0]}x{mask_dims[1]}",
                f"the first image's size, {first_size[0]}x{first_size[1]}",
            )
    return _call(typed, model, images=tuple(images), mask=mask)


async def _read_image(
    upload: str | UploadFile, field: str, max_bytes: int, max_pixels: int
) -> tuple[InputImage, tuple[int, int]]:
    if not isinstance(upload, UploadFile):
        raise InvalidRequest.for_field(field, "a text value", "a file upload (multipart file part)")
    size = upload.size
    if size is not None and size > max_bytes:
        raise PayloadTooLarge(f"{field} is {size} bytes; at most {max_bytes} bytes are allowed", field=field)
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{field} is larger than the {max_bytes} bytes allowed", field=field)
    fmt, dims = _sniff(data, field, max_pixels)
    return InputImage(data=data, filename=upload.filename or "image", content_type=_IMAGE_FORMATS[fmt]), dims


def _sniff(data: bytes, field: str, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """Read only the header: format and dimensions; refuse decompression bombs before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, dims = img.format or "", img.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidRequest.for_field(
            field, "a decompression bomb", f"at most {max_pixels} pixels"
        ) from None
    except Exception:  # Pillow raises many types for garbage; all mean "not an image we accept"
        raise InvalidRequest.for_field(
            field, f"<{len(data)} bytes, not an image>", "a PNG, JPEG or WEBP image"
        ) from None
    if fmt not in _IMAGE_FORMATS:
        raise InvalidRequest.for_field(field, fmt or "unknown format", "a PNG, JPEG or WEBP image")
    if dims[0] * dims[1] > max_pixels:
        raise InvalidRequest.for_field(field, f"{dims[0]}x{dims[1]}", f"at most {max_pixels} pixels")
    return fmt, dims

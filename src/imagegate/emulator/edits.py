"""Multipart image edits: reading the form (``image`` or repeated ``image[]``, ``mask``, string
fields), checking the files as Azure does, and painting the result.

Rules (§2.2): each input image PNG, JPEG or WEBP and at most 50 MB [I: the doc's 50 MB, not the
spec's 25 MB]; 1 to 16 images; the mask a PNG with an alpha channel, under 4 MB, the same size as
the first image. The result keeps every pixel of the first image where the mask's alpha is not 0
and paints the new content only where it is 0. When the output size differs from the first image,
both the image and the mask are resized to it first [I]. A JSON body on the edits route is
rejected (Azure's edit API takes multipart only, §1.1) [I].
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request

from imagegate.emulator.azure_errors import AzureError, invalid

MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024
MAX_IMAGES = 16
MAX_PIXELS = 8192 * 8192
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(slots=True)
class EditForm:
    """The parsed form: string fields, decoded input images, the mask, and a digest of the bytes."""

    fields: dict[str, Any]
    images: list[Image.Image] = field(default_factory=list)
    mask: Image.Image | None = None
    digest: str = ""

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [img.size for img in self.images]


def _unsupported_file(param: str, content_type: str | None) -> AzureError:
    return invalid(
        param,
        f"Invalid file '{param}': unsupported mimetype ('{content_type or 'application/octet-stream'}'). "
        "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
        "unsupported_file_mimetype",
    )


def _open(data: bytes, param: str, content_type: str | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in _FORMATS:
                raise _unsupported_file(param, content_type)
            if img.width * img.height > MAX_PIXELS:
                raise invalid(param, f"Invalid file '{param}': image is larger than 8192x8192 pixels.")
            img.load()
    except AzureError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning, SyntaxError):
        raise _unsupported_file(param, content_type) from None
    return img


async def _read(upload: UploadFile, limit: int, param: str, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise invalid(
            param,
            f"Invalid file '{param}': {what} must be less than {limit // (1024 * 1024)} MB.",
            "file_too_large",
        )
    return data


async def read_edit_form(request: Request) -> EditForm:
    """Parse and check the multipart body of an edit request."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise invalid(
            None,
            f"Invalid Content-Type header ({ctype or 'none'}), expected multipart/form-data.",
            "invalid_content_type",
        )
    try:
        form = await request.form(max_files=MAX_IMAGES + 4, max_fields=64, max_part_size=1024 * 1024)
    except Exception:
        raise invalid(None, "The multipart body could not be parsed.", "invalid_multipart") from None
    fields: dict[str, Any] = {}
    uploads: list[UploadFile] = []
    mask_upload: UploadFile | None = None
    for key, value in form.multi_items():
        if key in ("image", "image[]"):
            if not isinstance(value, UploadFile):
                raise invalid(
                    "image", "Invalid 'image': expected a file upload, got a form field.", "invalid_type"
                )
            uploads.append(value)
        elif key == "mask":
            if not isinstance(value, UploadFile):
                raise invalid(
                    "mask", "Invalid 'mask': expected a file upload, got a form field.", "invalid_type"
                )
            mask_upload = value
        elif isinstance(value, UploadFile):
            raise invalid(key, f"Unknown parameter: '{key}'.", "unknown_parameter")
        else:
            fields[key] = value
    if not uploads:
        raise invalid("image", "Missing required parameter: 'image'.", "missing_required_parameter")
    if len(uploads) > MAX_IMAGES:
        raise invalid(
            "image",
            f"Invalid 'image': array too long. Expected an array with maximum length {MAX_IMAGES}, "
            f"but got an array with length {len(uploads)} instead.",
            "array_above_max_length",
        )
    digest = hashlib.blake2b(digest_size=16)
    out = EditForm(fields=fields)
    for upload in uploads:
        data = await _read(upload, MAX_IMAGE_BYTES, "image", "each image")
        digest.update(hashlib.blake2b(data, digest_size=16).digest())
        out.images.append(_open(data, "image", upload.content_type))
    if mask_upload is not None:
        data = await _read(mask_upload, MAX_MASK_BYTES, "mask", "the mask")
        digest.update(b"mask" + hashlib.blake2b(data, digest_size=16).digest())
        out.mask = _check_mask(_open(data, "mask", mask_upload.content_type), out.images[0])
    out.digest = digest.hexdigest()
    return out


def _check_mask(mask: Image.Image, first: Image.Image) -> Image.Image:
    if mask.format != "PNG":
        raise invalid("mask", "Invalid mask image: the mask must be a PNG file.", "invalid_mask")
    has_alpha = "A" in mask.getbands() or (mask.mode == "P" and "transparency" in mask.info)
    if not has_alpha:
        raise invalid("mask", "Invalid mask image: the mask must have an alpha channel.", "invalid_mask")
    if mask.size != first.size:
        raise invalid(
            "mask",
            f"Invalid mask image: the mask ({mask.width}x{mask.height}) must have the same dimensions "
            f"as the image ({first.width}x{first.height}).",
            "invalid_mask",
        )
    return mask.convert("RGBA")


def edit_region(mask: Image.Image | None, size: tuple[int, int]) -> Image.Image:
    """An 'L' image, 255 where the edit may paint (mask alpha == 0), 0 elsewhere. Without a mask
    the whole image may change."""
    if mask is None:
        return Image.new("L", size, 255)
    alpha = mask.getchannel("A")
    if alpha.size != size:
        alpha = alpha.resize(size, Image.Resampling.NEAREST)
    return alpha.point(lambda a: 255 if a == 0 else 0)


def compose_edit(first: Image.Image, mask: Image.Image | None, painted: Image.Image) -> Image.Image:
    """Keep ``first`` outside the editable region, ``painted`` inside it."""
    mode = painted.mode
    base = first.convert(mode)
    if base.size != painted.size:
        base = base.resize(painted.size, Image.Resampling.LANCZOS)
    return Image.composite(painted, base, edit_region(mask, painted.size))

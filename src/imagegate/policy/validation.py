"""Validate a request against the catalog entry of the model that will serve it, before any
upstream call. Every error is an ``InvalidRequest`` naming the field, the value and what is
allowed; values that belong to another model (a DALL·E 3 ``quality="hd"``) say so and point at
``translate=True``.

``inspect_image`` reads uploaded images with Pillow (pure: bytes in, facts out) so that a
non-image, a truncated file, an oversized file or a mask of the wrong size / without alpha is
refused here and nothing is sent (or billed).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from imagegate.catalog import Catalog, ModelSpec, parse_size
from imagegate.errors import InvalidRequest
from imagegate.policy.translate import translate as translate_request
from imagegate.types import Change, EditRequest, ImageRequest, InputImage

__all__ = ["ImageFacts", "Validated", "inspect_image", "validate"]

_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}


# request field -> the ModelSpec attribute listing its allowed values
_LISTS = {
    "quality": "qualities",
    "output_format": "output_formats",
    "background": "backgrounds",
    "moderation": "moderations",
    "style": "styles",
    "response_format": "response_formats",
    "input_fidelity": "input_fidelities",
    "size": "sizes",
}


@dataclass(frozen=True, slots=True)
class Validated:
    """A request checked (and, if asked, translated) for ``spec``; ``changes`` lists translations."""

    request: ImageRequest
    spec: ModelSpec
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageFacts:
    format: str
    width: int
    height: int
    has_alpha: bool


def _hint(field: str, value: object, spec: ModelSpec, catalog: Catalog | None) -> str:
    if catalog is None:
        return ""
    others = [m for m in catalog.models_accepting(field, value) if m != spec.name]
    if not others:
        return ""
    owners = " / ".join(others)
    how = (
        "pass translate=True (CLI: --translate; HTTP gateway: header x-imagegate-translate: true) "
        "to map it to the nearest equivalent"
    )
    return f"; {value!r} is a {owners} value: {how}"


def _one_of(
    field: str, value: object, allowed: tuple[str, ...], spec: ModelSpec, catalog: Catalog | None
) -> None:
    if value is None or value in allowed:
        return
    if not allowed:
        text = f"{spec.name} does not take {field}"
    else:
        text = f"{spec.name} accepts one of {', '.join(allowed)}"
    raise InvalidRequest.for_field(field, value, text + _hint(_LISTS[field], value, spec, catalog))


def _check_prompt(req: ImageRequest, spec: ModelSpec) -> None:
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise InvalidRequest.for_field("prompt", req.prompt, "a non-empty string")
    if len(req.prompt) > spec.prompt_max_chars:
        raise InvalidRequest(
            f"prompt is {len(req.prompt)} characters; {spec.name} accepts at most {spec.prompt_max_chars}",
            field="prompt",
            value=f"<{len(req.prompt)} characters>",
            allowed=f"at most {spec.prompt_max_chars} characters",
        )


def _check_numbers(req: ImageRequest, spec: ModelSpec) -> None:
    if not isinstance(req.n, int) or isinstance(req.n, bool) or not spec.n_min <= req.n <= spec.n_max:
        allowed = f"an integer from {spec.n_min} to {spec.n_max} for {spec.name}"
        raise InvalidRequest.for_field("n", req.n, allowed)
    if req.output_compression is not None:
        if not spec.output_compression:
            raise InvalidRequest.for_field(
                "output_compression", req.output_compression, f"{spec.name} does not take it"
            )
        if not 0 <= req.output_compression <= 100:
            raise InvalidRequest.for_field(
                "output_compression", req.output_compression, "an integer from 0 to 100"
            )
        if req.output_format not in ("jpeg", "webp"):
            raise InvalidRequest.for_field(
                "output_compression", req.output_compression, "only with output_format jpeg or webp"
            )
    if req.partial_images is not None:
        if not spec.streaming:
            raise InvalidRequest.for_field(
                "partial_images", req.partial_images, f"{spec.name} does not stream"
            )
        if not 0 <= req.partial_images <= spec.partial_images_max:
            allowed = f"an integer from 0 to {spec.partial_images_max}"
            raise InvalidRequest.for_field("partial_images", req.partial_images, allowed)


def _check_size(req: ImageRequest, spec: ModelSpec, catalog: Catalog | None) -> None:
    if req.size is None or spec.accepts_size(req.size):
        return
    hint = _hint(_LISTS["size"], req.size, spec, catalog)
    parsed = parse_size(req.size)
    if spec.size_rule is not None and parsed is not None:
        why = spec.size_rule.check(*parsed)
        raise InvalidRequest.for_field(
            "size", req.size, f"{why}; {spec.name} accepts {spec.allowed_sizes_text()}"
        )
    raise InvalidRequest.for_field("size", req.size, f"{spec.name} accepts {spec.allowed_sizes_text()}{hint}")


def _check_options(req: ImageRequest, spec: ModelSpec, catalog: Catalog | None, dialect: str | None) -> None:
    _one_of("quality", req.quality, spec.qualities, spec, catalog)
    formats = spec.output_formats_for(dialect)
    if req.output_format in spec.output_formats and req.output_format not in formats:
        allowed = f"one of {', '.join(formats)} on the {dialect} route (use a v1-route deployment for it)"
        raise InvalidRequest.for_field("output_format", req.output_format, allowed)
    _one_of("output_format", req.output_format, spec.output_formats, spec, catalog)
    _one_of("background", req.background, spec.backgrounds, spec, catalog)
    _one_of("moderation", req.moderation, spec.moderations, spec, catalog)
    _one_of("style", req.style, spec.styles, spec, catalog)
    _one_of("response_format", req.response_format, spec.response_formats, spec, catalog)
    if req.background == "transparent" and (req.output_format or "png") not in spec.transparent_formats:
        allowed = f"output_format {' or '.join(spec.transparent_formats)} for a transparent background"
        raise InvalidRequest.for_field("output_format", req.output_format, allowed)
    if req.user is not None and (not isinstance(req.user, str) or len(req.user) > 256):
        raise InvalidRequest.for_field("user", req.user, "a string of at most 256 characters")


def inspect_image(data: bytes, *, field: str, max_bytes: int, formats: tuple[str, ...]) -> ImageFacts:
    """Decode ``data`` fully (catching truncation) and return its format, size and alpha."""
    if len(data) > max_bytes:
        raise InvalidRequest.for_field(field, data, f"files up to {max_bytes // (1024 * 1024)} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = _PIL_FORMATS.get(img.format or "", (img.format or "unknown").lower())
                img.load()
                width, height = img.size
                has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidRequest.for_field(
            field, data, f"a {', '.join(formats)} image ({exc.__class__.__name__})"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest.for_field(
            field, data, f"a complete image file; this one is damaged ({exc})"
        ) from None
    if fmt not in formats:
        raise InvalidRequest.for_field(field, f"<{fmt} image>", f"one of {', '.join(formats)}")
    return ImageFacts(fmt, width, height, has_alpha)


def _check_edit(req: EditRequest, spec: ModelSpec) -> None:
    if not spec.edits:
        raise InvalidRequest.for_field(
            "model", spec.name, "a model that supports edits (see `imagegate models`)"
        )
    if not 1 <= len(req.images) <= spec.edit_max_images:
        raise InvalidRequest.for_field(
            "image", f"<{len(req.images)} images>", f"1 to {spec.edit_max_images} images"
        )
    _one_of("input_fidelity", req.input_fidelity, spec.input_fidelities, spec, None)
    facts = [
        _inspect(img, f"image[{i}]", spec, spec.edit_image_max_bytes) for i, img in enumerate(req.images)
    ]
    if spec.edit_square_only and any(f.width != f.height for f in facts):
        raise InvalidRequest.for_field("image", "<non-square image>", f"square images for {spec.name}")
    if req.mask is not None:
        mask = inspect_image(req.mask.data, field="mask", max_bytes=spec.mask_max_bytes, formats=("png",))
        first = facts[0]
        if (mask.width, mask.height) != (first.width, first.height):
            allowed = f"the same size as the first image ({first.width}x{first.height})"
            raise InvalidRequest.for_field("mask", f"<{mask.width}x{mask.height} mask>", allowed)
        if not mask.has_alpha:
            allowed = "a PNG with an alpha channel (transparent pixels mark the area to edit)"
            raise InvalidRequest.for_field("mask", "<mask without alpha>", allowed)


def _inspect(img: InputImage, field: str, spec: ModelSpec, max_bytes: int) -> ImageFacts:
    return inspect_image(img.data, field=field, max_bytes=max_bytes, formats=spec.edit_image_formats)


def validate(
    req: ImageRequest,
    spec: ModelSpec,
    catalog: Catalog | None = None,
    *,
    translate: bool = False,
    dialect: str | None = None,
) -> Validated:
    """Check ``req`` for ``spec``; with ``translate``, first map foreign parameters (and list
    the changes). ``dialect`` (``azure-deployments``, ``azure-v1``, ``openai``) narrows what the
    wire route takes. Raises ``InvalidRequest`` on the first problem."""
    changes: tuple[Change, ...] = ()
    if translate and catalog is not None:
        req, changes = translate_request(req, spec, catalog)
    _check_prompt(req, spec)
    _check_numbers(req, spec)
    _check_size(req, spec, catalog)
    _check_options(req, spec, catalog, dialect)
    if isinstance(req, EditRequest):
        _check_edit(req, spec)
    return Validated(req, spec, changes)

"""Request parameters checked per model, as Azure checks them (§2), into one resolved
:class:`ImageParams`. Every problem becomes an Azure-shaped 400 naming ``param``; nothing here can
raise anything else, so bad input never turns into a 500.

Choices ([I], also in docs/emulator.md):

- A parameter no image route knows -> ``unknown_parameter``; a parameter the route knows but the
  model does not take (``style`` on gpt-image-1, ``response_format`` on gpt-image, ``input_fidelity``
  on mini, ``output_format`` on DALL·E) -> ``unsupported_parameter``. JSON ``null`` counts as absent.
- ``moderation``, ``stream`` and ``partial_images`` are accepted on 2025-04-01-preview too (the
  dated spec lacks them but the SDK sends them and Azure serves streaming on that version).
- ``output_compression`` below 100 with png output -> 400 (it only applies to jpeg/webp).
- ``background=transparent`` with jpeg -> 400 on ``background``.
- Multipart forms send everything as strings: ``n``, ``output_compression``, ``partial_images`` are
  parsed as integers and ``stream`` as true/false there (and only there).

Hand-written rather than a pydantic model: the product here is Azure's behaviour — which parameter
is reported first, the exact codes and messages, JSON versus form coercion — and a generic
validator's error shapes would have to be translated back one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagegate.emulator.azure_errors import AzureError, invalid
from imagegate.emulator.models import WEBP_VERSIONS, ModelSpec, flexible_size_problem, parse_size

_COMMON = frozenset({"prompt", "model", "n", "size", "quality", "user"})
_GPT_GEN = frozenset(
    {"output_format", "output_compression", "background", "moderation", "stream", "partial_images"}
)
_GPT_EDIT = frozenset(
    {"output_format", "output_compression", "background", "stream", "partial_images", "input_fidelity"}
)
_DALLE = frozenset({"style", "response_format"})
_ALL_GEN = _COMMON | _GPT_GEN | _DALLE
_ALL_EDIT = _COMMON | _GPT_EDIT | {"response_format"}


@dataclass(frozen=True, slots=True)
class ImageParams:
    """A validated image request, defaults applied. ``quality`` and ``width``/``height`` are the
    resolved values (auto replaced); ``size_requested`` is what the caller sent (or the default)."""

    operation: str
    prompt: str
    n: int
    width: int
    height: int
    size_requested: str
    quality: str
    output_format: str
    output_compression: int
    background: str
    moderation: str
    style: str | None
    response_format: str
    stream: bool
    partial_images: int
    input_fidelity: str | None
    user: str | None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _allowed_for(model: ModelSpec, operation: str) -> frozenset[str]:
    if model.is_gpt_image:
        extra = _GPT_GEN if operation == "generations" else _GPT_EDIT
        if not model.input_fidelity:
            extra = extra - {"input_fidelity"}
        return _COMMON | extra
    if model.family == "dall-e-3":
        return _COMMON | _DALLE
    return _COMMON | {"response_format"}


def _quote_list(values: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


class _Reader:
    """Typed access to the raw body: JSON values, or multipart strings when ``form``."""

    def __init__(self, raw: dict[str, Any], *, form: bool) -> None:
        self.raw = raw
        self.form = form

    def present(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def string(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid(
                name,
                f"Invalid type for '{name}': expected a string, but got {_type_name(value)} instead.",
                "invalid_type",
            )
        return value

    def integer(self, name: str) -> int | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if self.form and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(
                name,
                f"Invalid type for '{name}': expected an integer, but got {_type_name(value)} instead.",
                "invalid_type",
            )
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if self.form and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise invalid(
                name,
                f"Invalid type for '{name}': expected a boolean, but got {_type_name(value)} instead.",
                "invalid_type",
            )
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(name)
        if value is None:
            return default
        if value not in allowed:
            raise invalid(name, f"Invalid value: '{value}'. Supported values are: {_quote_list(allowed)}.")
        return value


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a decimal",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), "an unsupported type")


def _bounded(name: str, value: int | None, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if value < low:
        raise invalid(
            name,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            "integer_below_min_value",
        )
    if value > high:
        raise invalid(
            name,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            "integer_above_max_value",
        )
    return value


def _check_names(raw: dict[str, Any], model: ModelSpec, operation: str) -> None:
    route_known = _ALL_GEN if operation == "generations" else _ALL_EDIT
    allowed = _allowed_for(model, operation)
    for name in raw:
        if raw[name] is None:
            continue
        if name not in route_known:
            raise invalid(name, f"Unknown parameter: '{name}'.", "unknown_parameter")
        if name not in allowed:
            raise invalid(
                name,
                f"Unsupported parameter: '{name}' is not supported with this model ({model.name}).",
                "unsupported_parameter",
            )


def _prompt(r: _Reader, model: ModelSpec) -> str:
    if not r.present("prompt"):
        raise invalid("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter")
    prompt = r.string("prompt") or ""
    if not prompt:
        raise invalid(
            "prompt",
            "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            "string_below_min_length",
        )
    if len(prompt) > model.max_prompt:
        raise invalid(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length {model.max_prompt}, "
            f"but got a string with length {len(prompt)} instead.",
            "string_above_max_length",
        )
    return prompt


def _size(r: _Reader, model: ModelSpec) -> tuple[str, tuple[int, int] | None]:
    size = r.string("size") or model.default_size
    if size == "auto" and model.is_gpt_image:
        return size, None
    if model.flexible_sizes:
        dims = parse_size(size)
        problem = "expected WIDTHxHEIGHT or 'auto'" if dims is None else flexible_size_problem(*dims)
        if problem is None:
            return size, dims
        raise invalid("size", f"Invalid value: '{size}'. {problem[0].upper()}{problem[1:]}.")
    if size not in model.sizes:
        raise invalid("size", f"Invalid value: '{size}'. Supported values are: {_quote_list(model.sizes)}.")
    return size, parse_size(size)


def _gpt_format(r: _Reader, api_version: str) -> tuple[str, int, str]:
    formats = ("png", "jpeg", "webp") if api_version in WEBP_VERSIONS else ("png", "jpeg")
    fmt = r.choice("output_format", formats, "png")
    compression = _bounded("output_compression", r.integer("output_compression"), 0, 100, 100)
    if fmt == "png" and compression < 100:
        raise invalid(
            "output_compression",
            f"Invalid 'output_compression': compression {compression} is only supported with the jpeg "
            "or webp output formats.",
        )
    background = r.choice("background", ("transparent", "opaque", "auto"), "auto")
    if background == "transparent" and fmt == "jpeg":
        raise invalid(
            "background",
            "Invalid value: 'transparent'. A transparent background needs output_format 'png' or 'webp'.",
        )
    return fmt, compression, background


def validate_image_request(
    raw: dict[str, Any],
    model: ModelSpec,
    *,
    operation: str,
    api_version: str,
    form: bool = False,
    first_image_size: tuple[int, int] | None = None,
) -> ImageParams:
    """Check ``raw`` for ``model``; raise AzureError(400) naming the first bad parameter."""
    _check_names(raw, model, operation)
    r = _Reader(raw, form=form)
    prompt = _prompt(r, model)
    r.string("model")
    user = r.string("user")
    n = _bounded("n", r.integer("n"), 1, model.max_n, 1)
    size_requested, dims = _size(r, model)
    quality = r.choice("quality", model.qualities, model.default_quality)
    resolved_quality = model.default_quality if quality == "auto" else quality
    fmt, compression, background = "png", 100, "auto"
    moderation, stream, partials, fidelity = "auto", False, 0, None
    if model.is_gpt_image:
        fmt, compression, background = _gpt_format(r, api_version)
        if operation == "generations":
            moderation = r.choice("moderation", ("low", "auto"), "auto")
        stream = bool(r.boolean("stream"))
        partials = _bounded("partial_images", r.integer("partial_images"), 0, 3, 0)
        if model.input_fidelity and operation == "edits":
            fidelity = r.choice("input_fidelity", ("high", "low"), "low")
    style = r.choice("style", ("vivid", "natural"), "vivid") if model.family == "dall-e-3" else None
    response_format = "b64_json"
    if not model.is_gpt_image:
        response_format = r.choice("response_format", ("url", "b64_json"), "url")
    if dims is None:
        dims = _auto_size(first_image_size if operation == "edits" else None)
    return ImageParams(
        operation=operation,
        prompt=prompt,
        n=n,
        width=dims[0],
        height=dims[1],
        size_requested=size_requested,
        quality=resolved_quality,
        output_format=fmt,
        output_compression=compression,
        background=background,
        moderation=moderation,
        style=style,
        response_format=response_format,
        stream=stream,
        partial_images=partials,
        input_fidelity=fidelity,
        user=user,
    )


def _auto_size(first_image: tuple[int, int] | None) -> tuple[int, int]:
    """``size=auto``: 1024x1024 for generations; for edits the listed size whose aspect ratio is
    nearest the first input image's [I]."""
    if first_image is None:
        return (1024, 1024)
    aspect = first_image[0] / first_image[1]
    options = ((1024, 1024), (1536, 1024), (1024, 1536))
    return min(options, key=lambda wh: abs(wh[0] / wh[1] - aspect))


def require_object(body: Any) -> dict[str, Any]:
    """The JSON body must be an object."""
    if not isinstance(body, dict):
        raise invalid(
            None,
            f"Invalid type for request body: expected an object, but got {_type_name(body)} instead.",
            "invalid_type",
        )
    return body


__all__ = ["AzureError", "ImageParams", "require_object", "validate_image_request"]

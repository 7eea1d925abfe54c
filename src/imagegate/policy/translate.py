"""Map a request's parameters onto another model's nearest equivalents, listing every change.

Used when a caller opts in (``translate=True``: DALL·E 3 migrants sending ``quality="hd"``,
``size="1792x1024"``, ``style``) and by routing for cross-model fallback chains: translate the
request for each candidate model and report what changed. Pure: request + target spec + catalog
in, ``(new request, changes)`` out.

Rules, in order of the fields:

* ``size``: a fixed list → the size with the nearest aspect ratio (log distance; ties → the closer
  area). A size rule → the same aspect clamped to the rule, scaled to fit, rounded to its multiple.
  ``auto`` on a model without it → the model's default size.
* ``quality``: nearest rank in the catalog's ``quality_ranks`` (hd ≈ high, standard ≈ medium);
  ``auto`` on a model without it → the model's default quality.
* ``output_format``: an unsupported format → the model's first format; no formats → dropped.
* ``style``, ``response_format``, ``background``, ``moderation``, ``output_compression``,
  ``partial_images``, ``input_fidelity``: dropped when the model does not take them.
* ``n`` and the prompt are never changed: splitting ``n`` (or truncating a prompt) is not a
  translation, and validation reports them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, TypeVar

from imagegate.catalog import Catalog, ModelSpec, SizeRule, parse_size
from imagegate.types import Change, EditRequest, ImageRequest

__all__ = ["nearest_quality", "nearest_size", "translate"]

R = TypeVar("R", bound=ImageRequest)


def _fit_rule(width: int, height: int, rule: SizeRule) -> str:
    """Keep the aspect (clamped to the rule), scale down to fit, round to the multiple, then
    nudge the short edge until the rounded size satisfies the aspect bound again."""
    landscape = width >= height
    aspect = min(max(width, height) / min(width, height), rule.max_aspect)
    long_edge = float(max(width, height))
    long_edge = min(long_edge, rule.max_long_edge, rule.max_short_edge * aspect)
    m = rule.multiple_of
    long_s = max(rule.min_edge, round(long_edge / m) * m)
    long_s = min(long_s, rule.max_long_edge // m * m)
    short_s = max(rule.min_edge, round(long_s / aspect / m) * m)
    short_s = min(short_s, rule.max_short_edge // m * m)
    while long_s / short_s > rule.max_aspect:
        short_s += m
    w, h = (long_s, short_s) if landscape else (short_s, long_s)
    return f"{w}x{h}"


def nearest_size(size: str, spec: ModelSpec) -> str:
    """The size ``spec`` accepts that is closest to ``size`` in aspect ratio (then area)."""
    if spec.accepts_size(size):
        return size
    parsed = parse_size(size)
    if parsed is None or parsed[0] == 0 or parsed[1] == 0:
        fallback = spec.default_size or ("auto" if "auto" in spec.sizes else spec.sizes[0])
        return fallback
    if spec.size_rule is not None:
        return _fit_rule(*parsed, spec.size_rule)
    width, height = parsed
    ratio, area = math.log(width / height), width * height

    def distance(candidate: tuple[int, int]) -> tuple[float, float]:
        cw, ch = candidate
        return (round(abs(math.log(cw / ch) - ratio), 9), abs(math.log(cw * ch / area)))

    best = min(spec.fixed_sizes, key=distance)
    return f"{best[0]}x{best[1]}"


def nearest_quality(quality: str, spec: ModelSpec, catalog: Catalog) -> str:
    """The quality ``spec`` accepts whose rank is nearest (ties → the higher one)."""
    if quality in spec.qualities:
        return quality
    rank = catalog.quality_ranks.get(quality)
    ranked = [q for q in spec.qualities if q in catalog.quality_ranks]
    if rank is None or not ranked:
        return spec.default_quality
    return min(ranked, key=lambda q: (abs(catalog.quality_ranks[q] - rank), -catalog.quality_ranks[q]))


def _drop_if_unsupported(req: ImageRequest, spec: ModelSpec) -> dict[str, tuple[object, str]]:
    """Fields to drop, with the reason, for options the target model does not take."""
    checks: list[tuple[str, object, bool]] = [
        ("style", req.style, req.style in spec.styles),
        ("response_format", req.response_format, req.response_format in spec.response_formats),
        ("background", req.background, req.background in spec.backgrounds),
        ("moderation", req.moderation, req.moderation in spec.moderations),
        ("output_compression", req.output_compression, spec.output_compression),
        ("partial_images", req.partial_images, spec.streaming),
    ]
    if isinstance(req, EditRequest):
        checks.append(("input_fidelity", req.input_fidelity, req.input_fidelity in spec.input_fidelities))
    return {
        name: (value, f"{spec.name} does not take {name}={value!r}")
        for name, value, supported in checks
        if value is not None and not supported
    }


def translate(req: R, spec: ModelSpec, catalog: Catalog) -> tuple[R, tuple[Change, ...]]:
    """Return ``req`` adapted to ``spec`` and the list of changes made (empty when none)."""
    updates: dict[str, Any] = {}
    changes: list[Change] = []
    if req.size is not None and not spec.accepts_size(req.size):
        new = nearest_size(req.size, spec)
        updates["size"] = new
        changes.append(Change("size", req.size, new, f"nearest size {spec.name} supports"))
    if req.quality is not None and req.quality not in spec.qualities:
        new = nearest_quality(req.quality, spec, catalog)
        updates["quality"] = new
        changes.append(Change("quality", req.quality, new, f"nearest quality {spec.name} supports"))
    if req.output_format is not None and req.output_format not in spec.output_formats:
        fmt = spec.output_formats[0] if spec.output_formats else None
        updates["output_format"] = fmt
        why = f"{spec.name} does not take output_format={req.output_format!r}"
        changes.append(Change("output_format", req.output_format, fmt, why))
    for name, (value, why) in _drop_if_unsupported(req, spec).items():
        updates[name] = None
        changes.append(Change(name, value, None, why))
    if not updates:
        return req, ()
    return replace(req, **updates), tuple(changes)

"""What a result cost, and what a request will cost, in Decimal USD with the price's source.

* Token-priced models: ``text_in × text price + image_in × image-input price + output × output
  price`` per 1M tokens, from the billed ``usage``. Exact (no rounding); round for display with
  ``Cost.rounded()``.
* Per-image models (DALL·E): the list price for the size and quality, times the image count.
* No usage on a token-priced model: estimated from the output-token table, marked ``estimated``.

Estimates per image use the model's *published* per-image table when the catalog has one (so
``imagegate price`` shows what OpenAI publishes: $0.011 / $0.042 / $0.167 for a 1024×1024
gpt-image-1 image), else the token product rounded half-up to 3 places. ``auto`` quality means the
model's default; ``auto`` size the most expensive size (budgets must not under-estimate).
Sizes outside the token table (gpt-image-2's free sizes) scale the square row by pixel area.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from imagegate.catalog import ModelSpec, Pricing, parse_size
from imagegate.config import PriceOverride
from imagegate.errors import InvalidRequest
from imagegate.types import Cost, Usage

__all__ = ["cost_of", "estimate", "estimate_prompt_tokens", "output_tokens_per_image", "per_image_estimate"]

_MILLION = Decimal(1_000_000)
_CENT_TENTHS = Decimal("0.001")
_SQUARE = "1024x1024"


def _prices(spec: ModelSpec, override: PriceOverride | None) -> tuple[Decimal, Decimal, Decimal, str]:
    p: Pricing = spec.pricing
    source = f"{p.source} (checked {p.checked})"
    text, image_in, out = p.text_input_per_1m, p.image_input_per_1m, p.image_output_per_1m
    if override is not None:
        text = override.text_input_per_1m if override.text_input_per_1m is not None else text
        image_in = override.image_input_per_1m if override.image_input_per_1m is not None else image_in
        out = override.image_output_per_1m if override.image_output_per_1m is not None else out
        source = override.source
    return text, image_in, out, source


def _effective_quality(spec: ModelSpec, quality: str | None) -> str:
    return spec.default_quality if quality in (None, "auto") else str(quality)


def _table_sizes(spec: ModelSpec) -> tuple[str, ...]:
    p = spec.pricing
    if p.kind == "per_image":
        return tuple(p.per_image)
    return tuple(p.output_token_table.tokens) if p.output_token_table else ()


def _effective_size(spec: ModelSpec, size: str | None, quality: str) -> str:
    if size not in (None, "auto"):
        return str(size)
    if spec.default_size:
        return spec.default_size
    sizes = _table_sizes(spec)
    if not sizes:
        return _SQUARE
    if spec.pricing.kind == "per_image":
        return max(sizes, key=lambda s: spec.pricing.per_image[s].get(quality, Decimal(0)))
    return max(sizes, key=lambda s: output_tokens_per_image(spec, s, quality))


def output_tokens_per_image(spec: ModelSpec, size: str, quality: str) -> int:
    """Output tokens for one image from the catalog table (area-scaled for free sizes)."""
    table = spec.pricing.output_token_table
    if table is None:
        raise InvalidRequest.for_field("model", spec.name, "a token-priced model")
    row = table.tokens.get(size)
    if row is None:
        parsed, square = parse_size(size), table.tokens.get(_SQUARE)
        if parsed is None or square is None or quality not in square:
            raise InvalidRequest.for_field(
                "size", size, f"a size {spec.name} can price: {', '.join(table.tokens)}"
            )
        return round(square[quality] * parsed[0] * parsed[1] / (1024 * 1024))
    if quality not in row:
        raise InvalidRequest.for_field("quality", quality, f"one of {', '.join(row)} for pricing {spec.name}")
    return row[quality]


def per_image_estimate(
    spec: ModelSpec, size: str | None, quality: str | None, override: PriceOverride | None = None
) -> tuple[Decimal, str]:
    """Price of one image (no prompt): the published figure when there is one. Returns
    ``(usd, source)``."""
    q = _effective_quality(spec, quality)
    s = _effective_size(spec, size, q)
    if override is not None and override.per_image_usd is not None:
        return override.per_image_usd, override.source
    p = spec.pricing
    if p.kind == "per_image":
        try:
            return p.per_image[s][q], f"{p.source} (checked {p.checked})"
        except KeyError:
            sizes = ", ".join(p.per_image)
            raise InvalidRequest.for_field(
                "size", s, f"one of {sizes} with a listed price for {spec.name}"
            ) from None
    published = p.published_per_image.get(s, {}).get(q)
    if published is not None and override is None:
        return published, f"{p.published_per_image_source} (published per-image price)"
    _, _, out, source = _prices(spec, override)
    exact = Decimal(output_tokens_per_image(spec, s, q)) * out / _MILLION
    return exact.quantize(_CENT_TENTHS, rounding=ROUND_HALF_UP), f"{source}, output-token table"


def estimate_prompt_tokens(prompt: str | None) -> int:
    """Rough text-token count (≈ 4 characters per token) for estimates only."""
    return 0 if not prompt else max(1, (len(prompt) + 3) // 4)


def estimate(
    spec: ModelSpec,
    *,
    size: str | None,
    quality: str | None,
    n: int,
    prompt: str | None = None,
    override: PriceOverride | None = None,
) -> Cost:
    """Cost before spending: ``n`` images plus the prompt's text tokens (token-priced models)."""
    per_image, source = per_image_estimate(spec, size, quality, override)
    total = per_image * n
    if spec.pricing.kind == "tokens" and not (override and override.per_image_usd is not None):
        text, _, _, _ = _prices(spec, override)
        total += Decimal(estimate_prompt_tokens(prompt)) * text / _MILLION
    return Cost(usd=total, source=source, estimated=True, per_image_usd=per_image)


def cost_of(
    spec: ModelSpec,
    *,
    usage: Usage | None,
    size: str | None,
    quality: str | None,
    images: int,
    prompt: str | None = None,
    override: PriceOverride | None = None,
) -> Cost:
    """Cost of a result: from billed usage when the model is token-priced and usage is present,
    the per-image list price for per-image models, else an estimate (``estimated=True``)."""
    if override is not None and override.per_image_usd is not None:
        return Cost(
            usd=override.per_image_usd * images, source=override.source, per_image_usd=override.per_image_usd
        )
    if spec.pricing.kind == "per_image":
        per_image, source = per_image_estimate(spec, size, quality, override)
        return Cost(usd=per_image * images, source=source, per_image_usd=per_image)
    if usage is None:
        return estimate(spec, size=size, quality=quality, n=images, prompt=prompt, override=override)
    text, image_in, out, source = _prices(spec, override)
    text_tokens = usage.input_text_tokens
    image_tokens = usage.input_image_tokens
    if text_tokens + image_tokens == 0 and usage.input_tokens:
        text_tokens = usage.input_tokens  # no breakdown given: bill input as text
    usd = (
        Decimal(text_tokens) * text + Decimal(image_tokens) * image_in + Decimal(usage.output_tokens) * out
    ) / _MILLION
    return Cost(usd=usd, source=source, per_image_usd=usd / images if images else None)

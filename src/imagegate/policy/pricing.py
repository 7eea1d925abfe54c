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

__all__ = [
    "cost_of",
    "estimate",
    "estimate_prompt_tokens",
    "output_tokens_per_image",
    "per_image_estimate",
    "reservation_estimate",
]

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


def _exact_per_image(spec: ModelSpec, size: str, quality: str, override: PriceOverride | None) -> Decimal:
    """The most one image may cost: the token product and the published figure, whichever is
    higher (OpenAI's published per-image prices are rounded, some of them down)."""
    published, _ = per_image_estimate(spec, size, quality, override)
    if spec.pricing.kind != "tokens" or (override is not None and override.per_image_usd is not None):
        return published
    _, _, out, _ = _prices(spec, override)
    return max(published, Decimal(output_tokens_per_image(spec, size, quality)) * out / _MILLION)


def _candidates(asked: str | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """What a request may be rendered at: what it asked for when the model knows it, else (not
    given, ``auto``, or a value translation will map) any of them."""
    if asked is not None and asked != "auto" and asked in known:
        return (asked,)
    return tuple(v for v in known if v != "auto")


def reservation_estimate(
    spec: ModelSpec,
    *,
    size: str | None,
    quality: str | None,
    n: int,
    prompt: str | None = None,
    partial_images: int = 0,
    input_images: int = 0,
    high_fidelity: bool = False,
    override: PriceOverride | None = None,
) -> Decimal:
    """The most a request may be billed on ``spec``: what a budget holds before sending, so that
    concurrent requests can never spend past it once settled. Unlike :func:`estimate` it never
    under-counts: no quality or size is the model's default, ``auto`` (or a model without a
    default size) the most expensive, a value translation would map the model's most expensive;
    text tokens at one per UTF-8 byte of the prompt; partial images and the input images of an
    edit (at their largest tiling, plus the high-fidelity surcharge) at their token prices, as
    the model's token table counts them (the catalog's ``partial_image_tokens``,
    ``input_image_tokens_max``)."""
    qualities = _candidates(spec.default_quality if quality is None else quality, spec.qualities)
    sizes = _candidates(spec.default_size if size is None else size, _table_sizes(spec) or spec.sizes)
    if size is not None and size != "auto" and size not in sizes and parse_size(size) is not None:
        sizes = (size, *sizes)  # a free size (gpt-image-2) priced by area, next to the table's
    prices = []
    for s in sizes:
        for q in qualities:
            try:
                prices.append(_exact_per_image(spec, s, q, override))
            except InvalidRequest:
                continue
    total = max(prices, default=Decimal(0)) * n
    if spec.pricing.kind != "tokens" or (override is not None and override.per_image_usd is not None):
        return total
    text, image_in, out, _ = _prices(spec, override)
    total += Decimal(len((prompt or "").encode())) * text / _MILLION
    table = spec.pricing.output_token_table
    if table is None:
        return total
    total += Decimal(n * max(0, partial_images) * table.partial_image_tokens) * out / _MILLION
    image_tokens = input_images * table.input_image_tokens_max
    if high_fidelity and input_images:
        image_tokens += max((row.get("high", 0) for row in table.tokens.values()), default=0)
    return total + Decimal(image_tokens) * image_in / _MILLION

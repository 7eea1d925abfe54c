from __future__ import annotations

from decimal import Decimal

import pytest

from imagegate.catalog import default_catalog
from imagegate.config import PriceOverride
from imagegate.policy.pricing import cost_of, estimate, output_tokens_per_image, per_image_estimate
from imagegate.types import Usage

CAT = default_catalog()
G1 = CAT.get("gpt-image-1")


@pytest.mark.parametrize(("quality", "published"), [("low", "0.011"), ("medium", "0.042"), ("high", "0.167")])
def test_gpt_image_1_square_estimates_match_openai(quality: str, published: str) -> None:
    usd, source = per_image_estimate(G1, "1024x1024", quality)
    assert usd == Decimal(published)
    assert "published" in source


@pytest.mark.parametrize(
    ("quality", "tokens", "exact"),
    [("low", 272, "0.01088"), ("medium", 1056, "0.04224"), ("high", 4160, "0.16640")],
)
def test_real_usage_costs_exact_token_products(quality: str, tokens: int, exact: str) -> None:
    assert output_tokens_per_image(G1, "1024x1024", quality) == tokens
    cost = cost_of(G1, usage=Usage(output_tokens=tokens), size="1024x1024", quality=quality, images=1)
    assert cost.usd == Decimal(exact) and not cost.estimated


@pytest.mark.parametrize(("tokens", "rounded"), [(272, "0.011"), (1056, "0.042"), (4160, "0.167")])
def test_with_prompt_tokens_rounds_to_the_published_figure(tokens: int, rounded: str) -> None:
    usage = Usage(input_tokens=50, input_text_tokens=50, output_tokens=tokens, total_tokens=tokens + 50)
    cost = cost_of(G1, usage=usage, size="1024x1024", quality=None, images=1)
    assert cost.rounded(3) == Decimal(rounded)


def test_published_tables_agree_with_token_products() -> None:
    for spec in CAT.models.values():
        for size, row in spec.pricing.published_per_image.items():
            for quality, published in row.items():
                exact = (
                    Decimal(output_tokens_per_image(spec, size, quality))
                    * spec.pricing.image_output_per_1m
                    / 1_000_000
                )
                # published figures are rounded to 3 places, or to 2 for the big ones ($0.25)
                assert abs(exact - published) <= max(Decimal("0.001"), exact / 100), (
                    spec.name,
                    size,
                    quality,
                )


def test_edit_usage_bills_image_input_tokens() -> None:
    usage = Usage(input_tokens=1050, input_text_tokens=50, input_image_tokens=1000, output_tokens=4160)
    cost = cost_of(G1, usage=usage, size="1024x1024", quality="high", images=1)
    assert cost.usd == Decimal("0.00025") + Decimal("0.01") + Decimal("0.1664")


def test_missing_usage_is_estimated() -> None:
    cost = cost_of(G1, usage=None, size="1024x1024", quality="high", images=2, prompt="a red fox")
    assert cost.estimated
    assert cost.usd == Decimal("0.167") * 2 + Decimal(3) * Decimal(5) / 1_000_000


def test_dalle_per_image_prices() -> None:
    d3 = CAT.get("dall-e-3")
    cost = cost_of(d3, usage=None, size="1792x1024", quality="hd", images=1)
    assert cost.usd == Decimal("0.120") and not cost.estimated
    assert cost_of(d3, usage=None, size=None, quality=None, images=1).usd == Decimal("0.040")
    d2 = CAT.get("dall-e-2")
    assert estimate(d2, size="256x256", quality=None, n=3).usd == Decimal("0.048")


def test_estimate_n_images_and_auto_is_conservative() -> None:
    four = estimate(G1, size="1024x1024", quality="high", n=4)
    assert four.usd == Decimal("0.668") and four.estimated
    auto = estimate(G1, size="auto", quality="auto", n=1)
    assert auto.per_image_usd == Decimal("0.25")  # default quality high, largest size


def test_gpt_image_2_free_size_scales_by_area() -> None:
    g2 = CAT.get("gpt-image-2")
    assert output_tokens_per_image(g2, "2048x2048", "high") == 4 * 4160
    usd, _ = per_image_estimate(g2, "2048x2048", "high")
    assert usd == Decimal("0.499")  # 16640 tokens * $30/1M = 0.4992


def test_price_override() -> None:
    override = PriceOverride(image_output_per_1m=Decimal("20"))
    cost = cost_of(
        G1, usage=Usage(output_tokens=4160), size="1024x1024", quality="high", images=1, override=override
    )
    assert cost.usd == Decimal("0.0832") and cost.source == override.source
    flat = PriceOverride(per_image_usd=Decimal("0.05"))
    assert cost_of(
        G1, usage=Usage(output_tokens=1), size=None, quality=None, images=3, override=flat
    ).usd == Decimal("0.15")


@pytest.mark.parametrize(
    "model", [m for m in ("gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini", "dall-e-3")]
)
def test_a_reservation_covers_what_any_size_and_quality_is_billed(model: str) -> None:
    """The budget hold is never below the bill: every size and quality the model takes, by token
    product and by published figure, and what "auto" or an unknown value may render at."""
    from imagegate.policy.pricing import reservation_estimate

    spec = CAT.get(model)
    sizes = [s for s in spec.sizes if s != "auto"]
    qualities = [q for q in spec.qualities if q != "auto"]
    most = Decimal(0)
    for size in sizes:
        for quality in qualities:
            billed = estimate(spec, size=size, quality=quality, n=2).usd
            if spec.pricing.kind == "tokens":
                tokens = output_tokens_per_image(spec, size, quality) * 2
                billed = max(
                    billed,
                    cost_of(
                        spec, usage=Usage(output_tokens=tokens), size=size, quality=quality, images=2
                    ).usd,
                )
            held = reservation_estimate(spec, size=size, quality=quality, n=2)
            assert held >= billed, (size, quality)
            most = max(most, billed)
    for size, quality in (("auto", "auto"), ("1792x1024", "hd"), ("auto", "ultra")):
        assert reservation_estimate(spec, size=size, quality=quality, n=2) >= most, (size, quality)
    # nothing asked: what the model renders by default (its default quality; its default size,
    # or any size for a model whose default is "auto")
    assert (
        reservation_estimate(spec, size=None, quality=None, n=2)
        >= estimate(spec, size=None, quality=None, n=2).usd
    )


def test_a_reservation_counts_prompt_bytes_partial_images_and_edit_inputs() -> None:
    from imagegate.policy.pricing import reservation_estimate

    table = G1.pricing.output_token_table
    assert table is not None and (table.partial_image_tokens, table.input_image_tokens_max) == (100, 1097)

    base = reservation_estimate(G1, size="1024x1024", quality="low", n=1)
    assert base == Decimal("0.011")  # the published figure is above the token product (0.01088)
    prompt = "狐" * 10  # 3 UTF-8 bytes each: a tokenizer cannot make more tokens than bytes
    assert (
        reservation_estimate(G1, size="1024x1024", quality="low", n=1, prompt=prompt)
        == base + Decimal(30) * 5 / 10**6
    )
    streamed = reservation_estimate(G1, size="1024x1024", quality="low", n=2, partial_images=3)
    assert streamed == 2 * base + Decimal(2 * 3 * table.partial_image_tokens) * 40 / 10**6
    edit = reservation_estimate(G1, size="1024x1024", quality="low", n=1, input_images=2, high_fidelity=True)
    assert edit == base + Decimal(2 * table.input_image_tokens_max + 6240) * 10 / 10**6

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagegate.catalog import default_catalog
from imagegate.errors import InvalidRequest
from imagegate.policy.validation import inspect_image, validate
from imagegate.types import EditRequest, ImageRequest, InputImage

CAT = default_catalog()
G1 = CAT.get("gpt-image-1")


def png(size: tuple[int, int] = (64, 64), mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (255, 0, 0, 0) if mode == "RGBA" else (255, 0, 0)).save(buf, fmt)
    return buf.getvalue()


def test_valid_request_passes_unchanged() -> None:
    req = ImageRequest(
        prompt="a fox", size="1536x1024", quality="high", n=2, output_format="jpeg", output_compression=80
    )
    out = validate(req, G1, CAT)
    assert out.request is req and out.changes == ()


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"prompt": ""}, "prompt", "non-empty"),
        ({"prompt": "x" * 32001}, "prompt", "32000"),
        ({"n": 11}, "n", "1 to 10"),
        ({"n": 0}, "n", "1 to 10"),
        ({"size": "999x999"}, "size", "1536x1024"),
        ({"quality": "ultra"}, "quality", "low, medium, high, auto"),
        ({"output_format": "gif"}, "output_format", "png, jpeg, webp"),
        ({"background": "transparent", "output_format": "jpeg"}, "output_format", "png or webp"),
        ({"output_compression": 50}, "output_compression", "jpeg or webp"),
        ({"output_compression": 101, "output_format": "jpeg"}, "output_compression", "0 to 100"),
        ({"moderation": "none"}, "moderation", "low, auto"),
        ({"partial_images": 4}, "partial_images", "0 to 3"),
    ],
)
def test_each_error_names_field_value_and_allowed(
    kwargs: dict[str, object], field: str, fragment: str
) -> None:
    req = ImageRequest(**{"prompt": "a fox", **kwargs})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        validate(req, G1, CAT)
    assert info.value.field == field
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"quality": "hd"}, "quality"), ({"size": "1792x1024"}, "size"), ({"style": "vivid"}, "style")],
)
def test_dalle3_migrants_get_a_clear_error_pointing_at_translate(
    kwargs: dict[str, object], field: str
) -> None:
    req = ImageRequest(**{"prompt": "a fox", **kwargs})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as info:
        validate(req, G1, CAT)
    assert info.value.field == field
    assert "dall-e-3" in str(info.value) and "translate=True" in str(info.value)
    assert "x-imagegate-translate: true" in str(info.value)  # the way in for SDK callers of the gateway


def test_translate_maps_dalle3_parameters_and_lists_changes() -> None:
    req = ImageRequest(prompt="a fox", quality="hd", size="1792x1024", style="natural", response_format="url")
    out = validate(req, G1, CAT, translate=True)
    assert out.request.quality == "high"
    assert out.request.size == "1536x1024"
    assert out.request.style is None and out.request.response_format is None
    assert {c.field for c in out.changes} == {"quality", "size", "style", "response_format"}


def test_dalle3_limits() -> None:
    d3 = CAT.get("dall-e-3")
    with pytest.raises(InvalidRequest, match="from 1 to 1"):
        validate(ImageRequest(prompt="x", n=2), d3, CAT)
    with pytest.raises(InvalidRequest, match="4000"):
        validate(ImageRequest(prompt="x" * 4001), d3, CAT)
    validate(ImageRequest(prompt="x", quality="hd", style="vivid", size="1792x1024"), d3, CAT)


def test_gpt_image_2_size_rule_errors_say_why() -> None:
    g2 = CAT.get("gpt-image-2")
    validate(ImageRequest(prompt="x", size="2048x1152"), g2, CAT)
    with pytest.raises(InvalidRequest, match="multiples of 16"):
        validate(ImageRequest(prompt="x", size="1000x1000"), g2, CAT)
    with pytest.raises(InvalidRequest, match="aspect"):
        validate(ImageRequest(prompt="x", size="3072x992"), g2, CAT)


@pytest.mark.parametrize(
    "size", ["\u00b2x\u00b2", "\uff11\uff10\uff12\uff14x\uff11\uff10\uff12\uff14", "+1024x1024", " 1024x1024"]
)
def test_sizes_are_ascii_digits(size: str) -> None:
    """``"²x²"`` crashed ``int()`` (a 500 at the gateway); full-width digits passed as 1024x1024
    and were sent upstream as they were."""
    g2 = CAT.get("gpt-image-2")
    with pytest.raises(InvalidRequest) as refused:
        validate(ImageRequest(prompt="x", size=size), g2, CAT)
    assert refused.value.field == "size"


def edit(**kwargs: object) -> EditRequest:
    base: dict[str, object] = {"prompt": "add a hat", "images": (InputImage(data=png()),)}
    return EditRequest(**{**base, **kwargs})  # type: ignore[arg-type]


def test_edit_valid_with_mask() -> None:
    validate(edit(mask=InputImage(data=png(mode="RGBA"))), G1, CAT)


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"images": (InputImage(data=b"not an image at all"),)}, "image[0]", "png, jpeg, webp"),
        ({"images": (InputImage(data=png()[:-40]),)}, "image[0]", "damaged"),
        ({"images": (InputImage(data=png(fmt="GIF")),)}, "image[0]", "png, jpeg, webp"),
        ({"mask": InputImage(data=png((32, 32), "RGBA"))}, "mask", "64x64"),
        ({"mask": InputImage(data=png())}, "mask", "alpha"),
        ({"images": ()}, "image", "1 to 16"),
        ({"input_fidelity": "max"}, "input_fidelity", "low, high"),
    ],
)
def test_edit_inputs_refused_before_sending(kwargs: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate(edit(**kwargs), G1, CAT)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_oversized_file_refused() -> None:
    with pytest.raises(InvalidRequest, match="up to 1 MB"):
        inspect_image(b"x" * (1024 * 1024 + 1), field="image", max_bytes=1024 * 1024, formats=("png",))


def test_mini_has_no_input_fidelity_and_dalle3_no_edits() -> None:
    with pytest.raises(InvalidRequest, match="does not take input_fidelity"):
        validate(edit(input_fidelity="high"), CAT.get("gpt-image-1-mini"), CAT)
    with pytest.raises(InvalidRequest, match="supports edits"):
        validate(edit(), CAT.get("dall-e-3"), CAT)


def test_webp_only_where_the_route_takes_it() -> None:
    req = ImageRequest(prompt="x", output_format="webp")
    with pytest.raises(InvalidRequest, match="azure-deployments route"):
        validate(req, G1, CAT, dialect="azure-deployments")
    validate(req, G1, CAT, dialect="azure-v1")
    validate(req, G1, CAT, dialect="openai")

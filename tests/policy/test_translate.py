from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.catalog import default_catalog, parse_size
from imagegate.policy.translate import nearest_quality, nearest_size, translate
from imagegate.types import EditRequest, ImageRequest, InputImage

CAT = default_catalog()


@pytest.mark.parametrize(
    ("size", "model", "expected"),
    [
        ("1792x1024", "gpt-image-1", "1536x1024"),
        ("1024x1792", "gpt-image-1", "1024x1536"),
        ("256x256", "gpt-image-1", "1024x1024"),
        ("1536x1024", "dall-e-3", "1792x1024"),
        ("auto", "dall-e-3", "1024x1024"),
        ("1792x1024", "gpt-image-2", "1792x1024"),
        ("1000x1000", "gpt-image-2", "992x992"),
        ("4000x1000", "gpt-image-2", "3840x1280"),
        ("1536x1024", "dall-e-2", "1024x1024"),
    ],
)
def test_nearest_size(size: str, model: str, expected: str) -> None:
    assert nearest_size(size, CAT.get(model)) == expected


@pytest.mark.parametrize(
    ("quality", "model", "expected"),
    [
        ("hd", "gpt-image-1", "high"),
        ("standard", "gpt-image-1", "medium"),
        ("high", "dall-e-3", "hd"),
        ("low", "dall-e-3", "standard"),
        ("auto", "dall-e-3", "standard"),
        ("hd", "dall-e-2", "standard"),
    ],
)
def test_nearest_quality(quality: str, model: str, expected: str) -> None:
    assert nearest_quality(quality, CAT.get(model), CAT) == expected


def test_translation_to_dalle3_drops_gpt_image_options() -> None:
    req = ImageRequest(
        prompt="x",
        size="1024x1536",
        quality="low",
        output_format="png",
        background="opaque",
        moderation="low",
    )
    new, changes = translate(req, CAT.get("dall-e-3"), CAT)
    assert (new.size, new.quality, new.output_format, new.background, new.moderation) == (
        "1024x1792",
        "standard",
        None,
        None,
        None,
    )
    dropped = {c.field for c in changes if c.new is None}
    assert dropped == {"output_format", "background", "moderation"}
    assert all(c.reason for c in changes)


def test_nothing_to_translate_returns_same_request() -> None:
    req = ImageRequest(prompt="x", size="1024x1024", quality="high")
    assert translate(req, CAT.get("gpt-image-1"), CAT) == (req, ())


def test_edit_input_fidelity_dropped_for_mini() -> None:
    req = EditRequest(prompt="x", images=(InputImage(data=b"x"),), input_fidelity="high")
    new, changes = translate(req, CAT.get("gpt-image-1-mini"), CAT)
    assert isinstance(new, EditRequest) and new.input_fidelity is None and new.images == req.images
    assert [c.field for c in changes] == ["input_fidelity"]


@given(st.integers(16, 8000), st.integers(16, 8000), st.sampled_from(sorted(CAT.names())))
def test_nearest_size_is_always_accepted(w: int, h: int, model: str) -> None:
    spec = CAT.get(model)
    out = nearest_size(f"{w}x{h}", spec)
    assert spec.accepts_size(out)
    parsed = parse_size(out)
    if parsed and spec.size_rule is None and w / h > 1.2:
        assert parsed[0] >= parsed[1]  # landscape stays landscape when the model has one

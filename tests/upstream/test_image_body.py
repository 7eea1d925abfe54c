"""``parse_images_body`` must mean exactly what ``orjson.loads`` means, for any body."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.upstream.image_body import _spans, parse_images_body

B64 = base64.b64encode(bytes(range(256)) * 40).decode()


def reference(body: bytes) -> tuple[Any, list[str]]:
    """What the fast path must agree with: the whole body through orjson."""
    parsed = orjson.loads(body)
    images = []
    for item in parsed.get("data", []) if isinstance(parsed, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("b64_json"), str):
            images.append(item["b64_json"])
            item["b64_json"] = ""
    return parsed, images


def check(body: bytes) -> None:
    parsed, images = parse_images_body(body)
    want_parsed, want_images = reference(body)
    assert parsed == want_parsed
    # the views are the JSON string content of each value: written between quotes, they read back
    assert [orjson.loads(b'"' + bytes(v) + b'"') for v in images] == want_images


def test_typical_azure_body_uses_views_of_the_body() -> None:
    body = orjson.dumps(
        {
            "created": 1,
            "data": [{"b64_json": B64, "revised_prompt": "a fox"}, {"b64_json": B64[:100]}],
            "usage": {"total_tokens": 10},
        }
    )
    assert _spans(body) is not None
    parsed, images = parse_images_body(body)
    assert [len(v) for v in images] == [len(B64), 100]
    assert all(v.obj is body for v in images)  # zero-copy: slices of the upstream body
    assert parsed["data"][0] == {"b64_json": "", "revised_prompt": "a fox"}
    check(body)


@pytest.mark.parametrize(
    "body",
    [
        # the key's text inside another string (escaped quotes) is not a key
        b'{"data":[{"revised_prompt":"say \\"b64_json\\": \\"xyz\\"","b64_json":"QUJD"}]}',
        # the key as a string *value*, then as a real key, with whitespace around the colon
        b'{"note":"b64_json","data":[{"b64_json" :\n "QUJD"}]}',
        # an escape inside the base64 (a JSON "\/"): the full parser decides
        b'{"data":[{"b64_json":"QU\\/D"}]}',
        # a b64_json key outside data: counts do not match, full parser
        b'{"meta":{"b64_json":"QUJD"},"data":[{"url":"https://x/y.png"}]}',
        # a null value
        b'{"data":[{"b64_json":null,"url":"https://x"}]}',
        # URL results only: nothing to cut
        b'{"created":1,"data":[{"url":"https://x/a.png","revised_prompt":"b"}]}',
        # an empty string value stays an empty image
        b'{"data":[{"b64_json":""}]}',
    ],
)
def test_tricky_bodies_agree_with_orjson(body: bytes) -> None:
    check(body)


@pytest.mark.parametrize(
    "body",
    [b'{"data":[{"b64_json":"QUJD"}]', b'{"data":[{"b64_json":"QUJD}]}', b"not json", b""],
)
def test_invalid_json_raises_like_orjson(body: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    with pytest.raises(orjson.JSONDecodeError):
        parse_images_body(body)


texts = st.text(alphabet=st.sampled_from('ab"\\: \n{}[],b64_json/é'), max_size=30)
b64s = st.text(alphabet=st.sampled_from("ABCxyz019+/="), max_size=40)
items = st.builds(
    lambda extra, known: {**extra, **known},
    st.dictionaries(texts, texts, max_size=2),  # keys that may spell "b64_json" in odd ways
    st.fixed_dictionaries(
        {}, optional={"b64_json": st.one_of(b64s, st.none(), texts), "revised_prompt": texts, "url": texts}
    ),
)
bodies = st.fixed_dictionaries(
    {"data": st.lists(items, max_size=4)},
    optional={
        "created": st.integers(0, 2**40),
        "usage": st.dictionaries(texts, texts, max_size=2),
        "b64_json": texts,
    },
)


@given(bodies, st.booleans())
def test_any_body_agrees_with_orjson(body: dict[str, Any], indent: bool) -> None:
    check(orjson.dumps(body, option=orjson.OPT_INDENT_2 if indent else 0))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_image_header_gives_format_and_size_without_decoding_all(fmt: str) -> None:
    import io

    from PIL import Image

    from imagegate.types import GeneratedImage

    out = io.BytesIO()
    extra = {"exif": b"Exif\x00\x00" + b"\x00" * 60_000} if fmt == "JPEG" else {}  # SOF past 48 KB
    Image.new("RGB", (1536, 1024), (10, 20, 30)).save(out, fmt, **extra)
    image = GeneratedImage.from_b64(memoryview(base64.b64encode(out.getvalue())))
    assert (image.format, image.width, image.height) == (fmt.lower(), 1536, 1024)
    assert image.data == out.getvalue() and image.b64_json == base64.b64encode(out.getvalue()).decode()


def test_unreadable_header_leaves_size_unknown() -> None:
    from imagegate.types import GeneratedImage

    image = GeneratedImage.from_b64(b"bm90IGFuIGltYWdl")  # "not an image"
    assert (image.format, image.width, image.height) == (None, None, None)


LONG = base64.b64encode(bytes(range(256)) * 2400).decode()  # 819,200 characters: several pieces


@pytest.mark.parametrize("at", [0, 262_100, 262_143, 262_144, 262_145, 524_300, len(LONG) - 2])
def test_an_escape_anywhere_in_a_long_value_goes_to_the_full_parser(at: int) -> None:
    value = LONG[:at] + "\\/" + LONG[at + 1 :]  # JSON's optional escape of "/", in some piece
    body = b'{"data":[{"b64_json":"' + value.encode() + b'"}],"usage":{"total_tokens":1}}'
    assert _spans(body) is None
    check(body)


@pytest.mark.parametrize("length", [262_143, 262_144, 262_145, 524_288, len(LONG)])
def test_a_long_value_ending_on_or_near_a_piece_boundary_is_cut_exactly(length: int) -> None:
    body = b'{"data":[{"b64_json":"' + LONG[:length].encode() + b'"}],"note":"a \\\\ b"}'
    spans = _spans(body)
    assert spans == [(22, 22 + length)]  # the backslash after the value is not in it
    check(body)

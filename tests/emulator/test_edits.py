"""Multipart edits: image / image[] parts, the mask rule checked pixel by pixel, and Azure's 400s
for bad files."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from emulator.support import KEY, edit_url


def png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def striped(size: tuple[int, int] = (1024, 1024)) -> Image.Image:
    img = Image.new("RGB", size, (10, 120, 200))
    for x in range(0, size[0], 40):
        img.paste((230, 40, 40), (x, 0, x + 13, size[1]))
    for y in range(0, size[1], 50):
        img.paste((30, 200, 60), (0, y, size[0], y + 7))
    return img


def hole_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), box)
    return mask


def decode(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


async def test_only_the_transparent_mask_area_changes(client: httpx.AsyncClient) -> None:
    original = striped()
    box = (300, 400, 700, 800)
    files = [
        ("image", ("in.png", png(original), "image/png")),
        ("mask", ("mask.png", png(hole_mask(original.size, box)), "image/png")),
    ]
    r = await client.post(edit_url(), headers=KEY, files=files, data={"prompt": "a ball", "quality": "low"})
    assert r.status_code == 200, r.text
    out = decode(r.json()["data"][0]["b64_json"]).convert("RGB")
    assert out.size == original.size
    src, dst = original.load(), out.load()
    assert src is not None and dst is not None
    changed_inside = 0
    for y in range(0, 1024, 3):
        for x in range(0, 1024, 3):
            inside = box[0] <= x < box[2] and box[1] <= y < box[3]
            if inside:
                changed_inside += src[x, y] != dst[x, y]
            else:
                assert src[x, y] == dst[x, y], (x, y)
    assert changed_inside > 0.9 * (400 // 3) * (400 // 3)


async def test_repeated_image_parts_and_input_tokens(client: httpx.AsyncClient) -> None:
    data = png(striped((512, 512)))
    files = [("image[]", (f"{i}.png", data, "image/png")) for i in range(3)]
    r = await client.post(
        edit_url(), headers=KEY, files=files, data={"prompt": "merge", "quality": "low", "n": "2"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["data"]) == 2
    # 512x512 is one tile: 65 + 129 per image
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 3 * (65 + 129)
    assert body["usage"]["output_tokens"] == 2 * 272


async def test_input_fidelity_high_costs_more_and_mini_refuses_it(client: httpx.AsyncClient) -> None:
    files = [("image", ("a.png", png(striped((256, 256))), "image/png"))]
    low = await client.post(edit_url(), headers=KEY, files=files, data={"prompt": "p", "quality": "low"})
    high = await client.post(
        edit_url(), headers=KEY, files=files, data={"prompt": "p", "quality": "low", "input_fidelity": "high"}
    )
    assert high.json()["usage"]["input_tokens"] - low.json()["usage"]["input_tokens"] == 4160
    mini = await client.post(
        edit_url("gpt-image-1-mini"), headers=KEY, files=files, data={"prompt": "p", "input_fidelity": "high"}
    )
    assert mini.status_code == 400 and mini.json()["error"]["param"] == "input_fidelity"


@pytest.mark.parametrize(
    ("files", "param", "code"),
    [
        ([("image", ("a.txt", b"hello", "text/plain"))], "image", "unsupported_file_mimetype"),
        ([("image", ("a.gif", b"GIF89a" + b"\x00" * 20, "image/gif"))], "image", "unsupported_file_mimetype"),
        ([("image[]", (f"{i}.png", b"", "image/png")) for i in range(17)], "image", "array_above_max_length"),
    ],
)
async def test_bad_image_files(
    client: httpx.AsyncClient, files: list[tuple[str, tuple[str, bytes, str]]], param: str, code: str
) -> None:
    r = await client.post(edit_url(), headers=KEY, files=files, data={"prompt": "p"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


async def test_missing_image(client: httpx.AsyncClient) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\np\r\n--b--\r\n'
    headers = {**KEY, "content-type": "multipart/form-data; boundary=b"}
    r = await client.post(edit_url(), headers=headers, content=body)
    assert r.status_code == 400
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == ("image", "missing_required_parameter")


async def test_garbled_multipart_is_a_400(client: httpx.AsyncClient) -> None:
    headers = {**KEY, "content-type": "multipart/form-data; boundary=b"}
    r = await client.post(edit_url(), headers=headers, content=b"--b\r\nno headers at all")
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("mask", "fragment"),
    [
        (png(Image.new("RGB", (64, 64))), "alpha channel"),
        (png(Image.new("RGBA", (32, 64))), "same dimensions"),
        (png(Image.new("RGBA", (64, 64)).convert("RGB"), "JPEG"), "PNG"),
    ],
)
async def test_bad_masks(client: httpx.AsyncClient, mask: bytes, fragment: str) -> None:
    files = [
        ("image", ("a.png", png(striped((64, 64))), "image/png")),
        ("mask", ("m.png", mask, "image/png")),
    ]
    r = await client.post(edit_url(), headers=KEY, files=files, data={"prompt": "p"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "mask"
    assert fragment in r.json()["error"]["message"]


async def test_too_large_image_is_refused_without_500(client: httpx.AsyncClient) -> None:
    from imagegate.emulator import edits

    big = b"\x89PNG" + b"\x00" * (edits.MAX_IMAGE_BYTES + 1)
    r = await client.post(
        edit_url(), headers=KEY, files=[("image", ("big.png", big, "image/png"))], data={"prompt": "p"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "file_too_large"


async def test_json_body_and_dalle_are_refused(client: httpx.AsyncClient) -> None:
    r = await client.post(edit_url(), headers=KEY, json={"prompt": "p"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_type"
    files = [("image", ("a.png", png(striped((64, 64))), "image/png"))]
    r = await client.post(edit_url("dall-e-3", "2024-10-21"), headers=KEY, files=files, data={"prompt": "p"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "OperationNotSupported"


async def test_size_auto_follows_the_first_image_aspect(client: httpx.AsyncClient) -> None:
    files = [("image", ("a.png", png(striped((600, 400))), "image/png"))]
    r = await client.post(edit_url(), headers=KEY, files=files, data={"prompt": "wide", "quality": "low"})
    assert r.status_code == 200
    assert decode(r.json()["data"][0]["b64_json"]).size == (1536, 1024)


async def test_edit_streaming_with_form_fields(client: httpx.AsyncClient) -> None:
    files = [("image", ("a.png", png(striped((256, 256))), "image/png"))]
    data = {"prompt": "s", "quality": "low", "stream": "true", "partial_images": "2"}
    r = await client.post(edit_url(), headers=KEY, files=files, data=data)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    names = [line.split(": ", 1)[1] for line in r.text.splitlines() if line.startswith("event: ")]
    assert names == ["image_edit.partial_image", "image_edit.partial_image", "image_edit.completed"]

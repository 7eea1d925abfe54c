"""Request parsing: JSON and multipart bodies, types, unknown fields, file limits, bomb guard."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from imagegate.errors import InvalidRequest
from imagegate.server.app import build_app
from imagegate.server.parsing import parse_edit, parse_generation
from imagegate.server.settings import ServerLimits
from imagegate.server.state import GatewayState
from imagegate.types import EditRequest

from .images import jpeg, png


def test_generation_fields_are_typed() -> None:
    call = parse_generation(
        b'{"prompt":"a fox","n":2,"size":"1024x1024","stream":true,"response_format":"b64_json"}'
    )
    assert call.request.prompt == "a fox"
    assert call.request.n == 2
    assert call.request.size == "1024x1024"
    assert call.stream is True
    assert call.response_format == "b64_json"
    assert call.request.response_format is None  # the gateway, not upstream, decides the format


def test_a_stream_cannot_answer_with_urls() -> None:
    """Streamed images are base64 events: ``response_format=url`` was silently ignored."""
    with pytest.raises(InvalidRequest) as refused:
        parse_generation(b'{"prompt":"x","stream":true,"response_format":"url"}')
    assert refused.value.field == "response_format"
    assert parse_generation(b'{"prompt":"x","stream":true,"response_format":"b64_json"}').stream


def test_azure_path_model_overrides_body_model() -> None:
    call = parse_generation(b'{"prompt":"x","model":"other"}', model="cheap")
    assert call.request.model == "cheap"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1,2]", "body"),
        (b'{"n":1}', "prompt"),
        (b'{"prompt":""}', "prompt"),
        (b'{"prompt":"x","n":"2"}', "n"),
        (b'{"prompt":"x","n":true}', "n"),
        (b'{"prompt":"x","n":1.5}', "n"),
        (b'{"prompt":"x","size":1024}', "size"),
        (b'{"prompt":"x","stream":"yes"}', "stream"),
        (b'{"prompt":"x","response_format":"png"}', "response_format"),
        (b'{"prompt":"x","colour":"red"}', "colour"),
        (b'{"prompt":5}', "prompt"),
    ],
)
def test_bad_generation_bodies_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_generation(body)
    assert info.value.field == field


@pytest.fixture
async def edit_client() -> AsyncIterator[httpx.AsyncClient]:
    limits = ServerLimits(
        max_images=3, max_image_bytes=50_000, max_mask_bytes=10_000, max_image_pixels=300 * 300
    )
    app: FastAPI = build_app(GatewayState(limits=limits))

    @app.post("/edit")
    async def edit(request: Request) -> Response:
        call = await parse_edit(request, limits)
        req = call.request
        assert isinstance(req, EditRequest)
        sizes = ",".join(f"{i.content_type}:{len(i.data)}" for i in req.images)
        mask = req.mask.content_type if req.mask else "-"
        return Response(f"{req.prompt}|{req.n}|{call.stream}|{sizes}|{mask}")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_single_image_multiple_images_and_mask(edit_client: httpx.AsyncClient) -> None:
    p, j = png(), jpeg()
    r = await edit_client.post(
        "/edit", data={"prompt": "hat", "n": "2"}, files={"image": ("a.png", p, "image/png")}
    )
    assert r.status_code == 200, r.text
    assert r.text == f"hat|2|False|image/png:{len(p)}|-"
    files = [("image[]", ("a.png", p, "image/png")), ("image[]", ("b.jpg", j, "application/octet-stream"))]
    files.append(("mask", ("m.png", png(), "image/png")))
    r = await edit_client.post("/edit", data={"prompt": "hat", "stream": "true"}, files=files)
    assert r.status_code == 200, r.text
    assert r.text == f"hat|1|True|image/png:{len(p)},image/jpeg:{len(j)}|image/png"


@pytest.mark.parametrize(
    ("data", "files", "status", "param"),
    [
        ({"prompt": "x"}, [("mask", ("m.png", png(), "image/png"))], 400, "image"),
        ({"prompt": "x"}, [], 400, "content-type"),
        ({}, [("image", ("a.png", png(), "image/png"))], 400, "prompt"),
        ({"prompt": "x", "n": "two"}, [("image", ("a.png", png(), "image/png"))], 400, "n"),
        ({"prompt": "x", "stream": "maybe"}, [("image", ("a.png", png(), "image/png"))], 400, "stream"),
        ({"prompt": "x", "colour": "red"}, [("image", ("a.png", png(), "image/png"))], 400, "colour"),
        ({"prompt": "x"}, [("image", ("a.txt", b"hello, not an image", "image/png"))], 400, "image"),
        ({"prompt": "x"}, [("image", ("a.png", png(), "image/png"))] * 4, 400, "image"),
        # past the parser's own file limit (images + a mask): still the field, not "body"
        ({"prompt": "x"}, [("image[]", ("a.png", png(), "image/png"))] * 5, 400, "image"),
        (
            {"prompt": "x"},
            [("image[]", ("a.png", png(), "image/png"))] * 4 + [("mask", ("m.png", png(), "image/png"))],
            400,
            "image",
        ),
        ({"prompt": "x"}, [("image", ("big.png", png(400, 400), "image/png"))], 400, "image"),
        (
            {"prompt": "x"},
            [("image", ("a.png", png(), "image/png")), ("mask", ("m.png", png(32, 32), "image/png"))],
            400,
            "mask",
        ),
        (
            {"prompt": "x"},
            [("image", ("a.png", jpeg(), "image/png")), ("mask", ("m.jpg", jpeg(), "image/jpeg"))],
            400,
            "mask",
        ),
    ],
)
async def test_bad_edits_are_400_naming_the_field(
    edit_client: httpx.AsyncClient,
    data: dict[str, str],
    files: list[tuple[str, tuple[str, bytes, str]]],
    status: int,
    param: str,
) -> None:
    r = await edit_client.post("/edit", data=data, files=files)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


async def test_oversized_file_is_413(edit_client: httpx.AsyncClient) -> None:
    noisy = bytes(range(256)) * 200  # 51,200 bytes > 50,000 allowed per image
    r = await edit_client.post("/edit", data={"prompt": "x"}, files={"image": ("a.png", noisy, "image/png")})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert r.json()["error"]["param"] == "image"
    files = [("image", ("a.png", png(), "image/png")), ("mask", ("m.png", noisy[:10_001], "image/png"))]
    r = await edit_client.post("/edit", data={"prompt": "x"}, files=files)
    assert r.status_code == 413 and r.json()["error"]["param"] == "mask"


async def test_too_many_files_says_what_is_allowed(edit_client: httpx.AsyncClient) -> None:
    files = [("image[]", ("a.png", png(), "image/png"))] * 5
    error = (await edit_client.post("/edit", data={"prompt": "x"}, files=files)).json()["error"]
    assert "at most 3 images" in error["message"] and "one mask" in error["message"]


async def test_decompression_bomb_header_is_refused_without_decoding(edit_client: httpx.AsyncClient) -> None:
    # A real PNG whose header claims 10000x10000 pixels: small on the wire, 100 Mpx if decoded
    # (over Pillow's own bomb threshold too).
    bomb = png(10000, 10000, mode="1")
    assert len(bomb) < 50_000
    r = await edit_client.post("/edit", data={"prompt": "x"}, files={"image": ("b.png", bomb, "image/png")})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "image" and "pixels" in err["message"]


async def test_multipart_limits_hit_while_parsing_name_the_gateway_limit(
    edit_client: httpx.AsyncClient,
) -> None:
    """Starlette stops parsing at ``max_images + 1`` files (room for the mask) and at a text
    field over the JSON body limit, and answered in its own words, wrapped as an HTTP 400 that
    skipped the gateway's handling: "Too many files. Maximum number of files is 4." for a
    gateway that allows 3 images, no ``param``, and a 400 for what is a size limit (413)."""
    files = [("image[]", ("a.png", png(), "image/png"))] * 5
    r = await edit_client.post("/edit", data={"prompt": "x"}, files=files)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "image" and "at most 3 images" in err["message"]
    r = await edit_client.post(
        "/edit", data={"prompt": "p" * (1024 * 1024 + 1)}, files={"image": ("a.png", png(), "image/png")}
    )
    assert r.status_code == 413
    err = r.json()["error"]
    assert err["code"] == "payload_too_large" and "1048576 bytes" in err["message"]

"""Generation through the deployment and v1 routes, in process: bodies, headers, images."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from emulator.support import KEY, gen_url


def decode(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


async def test_gpt_image_success_body_usage_and_headers(client: httpx.AsyncClient) -> None:
    r = await client.post(gen_url(), headers=KEY, json={"prompt": "a red fox", "size": "1536x1024"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"created", "data", "usage"}
    assert set(body["data"][0]) == {"b64_json"}
    assert body["usage"] == {
        "total_tokens": 3 + 6208,
        "input_tokens": 3,
        "output_tokens": 6208,  # high is Azure's default quality for gpt-image-1
        "input_tokens_details": {"text_tokens": 3, "image_tokens": 0},
    }
    img = decode(body["data"][0]["b64_json"])
    assert img.format == "PNG" and img.size == (1536, 1024)
    for header in ("apim-request-id", "x-request-id", "x-ms-region", "x-ratelimit-remaining-requests"):
        assert header in r.headers
    assert r.headers["x-ms-region"] == "East US 2"
    assert r.headers["x-ratelimit-remaining-requests"] == "9"


async def test_same_request_gives_same_bytes(client: httpx.AsyncClient) -> None:
    body = {"prompt": "deterministic", "quality": "low"}
    a = (await client.post(gen_url(), headers=KEY, json=body)).json()["data"][0]["b64_json"]
    b = (await client.post(gen_url(), headers=KEY, json=body)).json()["data"][0]["b64_json"]
    c = (await client.post(gen_url(), headers=KEY, json={**body, "prompt": "other"})).json()["data"][0][
        "b64_json"
    ]
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("deployment", "quality", "tokens"),
    [("gpt-image-1", None, 4160), ("gpt-image-1-mini", None, 1056), ("gpt-image-1", "low", 272)],
)
async def test_default_quality_per_model(
    client: httpx.AsyncClient, deployment: str, quality: str | None, tokens: int
) -> None:
    body: dict[str, object] = {"prompt": "q", "size": "1024x1024"}
    if quality:
        body["quality"] = quality
    r = await client.post(gen_url(deployment), headers=KEY, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["output_tokens"] == tokens


async def test_v1_route_takes_deployment_in_model_and_bearer_key(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/openai/v1/images/generations?api-version=preview",
        headers={"authorization": "Bearer emulator-key"},
        json={"model": "gpt-image-1-mini", "prompt": "v1 fox", "output_format": "webp", "quality": "low"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output_format"] == "webp" and body["size"] == "1024x1024" and body["quality"] == "low"
    assert decode(body["data"][0]["b64_json"]).format == "WEBP"


async def test_dalle3_url_points_back_and_serves_the_image(client: httpx.AsyncClient) -> None:
    r = await client.post(
        gen_url("dall-e-3", "2024-10-21"), headers=KEY, json={"prompt": "Clippy", "style": "natural"}
    )
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    assert list(item) == ["revised_prompt", "prompt_filter_results", "url", "content_filter_results"]
    assert item["url"].startswith("http://emu.test/private/images/")
    got = await client.get(item["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (1024, 1024)
    assert "usage" not in r.json()

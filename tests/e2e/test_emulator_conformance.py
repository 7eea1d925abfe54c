"""Conformance of the emulator with the official openai SDK (3.51, httpx2 inside) over real
loopback sockets: AzureOpenAI with an api key, AzureOpenAI with an Entra token provider, and
OpenAI on the v1 route; generate, edit with a mask, streaming, and the error classes the SDK
raises. Bodies are also checked against the Azure schemas transcribed in emulator/schemas.py."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI, OpenAI
from PIL import Image

from emulator.schemas import (
    AZURE_CODE_MESSAGE,
    COMPLETED_EVENT,
    CONTENT_FILTER_EXAMPLE,
    DALLE3_EXAMPLE_REQUEST,
    DALLE3_EXAMPLE_RESPONSE,
    DALLE_ERROR_RESPONSE,
    EDIT_EXAMPLE_RESPONSE,
    GENERATE_IMAGES_RESPONSE,
    PARTIAL_EVENT,
    check,
    shape_covers,
)
from imagegate.emulator import DeploymentSpec, EmulatorConfig, create_emulator_app, default_emulator_config
from imagegate.emulator.serve import EmulatorServer

pytestmark = pytest.mark.e2e

KEY = "emulator-key"
PREVIEW = "2025-04-01-preview"


def _config() -> EmulatorConfig:
    extra = (
        DeploymentSpec(
            name="tiny", model="gpt-image-1-mini", rpm=60, window_s=1, concurrency=2, image_bytes="small"
        ),
        DeploymentSpec(name="faulty", model="gpt-image-1", image_bytes="small", entra=True),
        DeploymentSpec(name="dalle2", model="dall-e-2", image_bytes="small"),
    )
    # The defaults' 10 requests per 10 s would 429 this suite; quotas are exercised on "tiny".
    roomy = tuple(d.model_copy(update={"rpm": 60_000}) for d in default_emulator_config().deployments)
    return EmulatorConfig(deployments=roomy + extra)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_emulator_app(_config(), time_scale=0)) as server:
        yield server


@pytest.fixture
def admin(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, timeout=10) as c:
        yield c
        c.put("/_emulator/deployments/faulty/faults", json=[])


@pytest.fixture
def azure(emulator: EmulatorServer) -> Iterator[AzureOpenAI]:
    with AzureOpenAI(azure_endpoint=emulator.base_url, api_key=KEY, api_version=PREVIEW, timeout=20) as c:
        yield c


def _png(b64: str | None) -> Image.Image:
    assert b64 is not None
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def _counters(admin: httpx.Client, name: str) -> dict[str, Any]:
    counters: dict[str, Any] = admin.get(f"/_emulator/deployments/{name}").json()["counters"]
    return counters


def test_generate_with_api_key(azure: AzureOpenAI) -> None:
    raw = azure.images.with_raw_response.generate(model="gpt-image-1", prompt="a red fox", quality="low")
    check(GENERATE_IMAGES_RESPONSE, raw.http_response.json())
    result = raw.parse()
    assert result.usage is not None and result.usage.output_tokens == 272
    assert result.data is not None
    assert _png(result.data[0].b64_json).size == (1024, 1024)
    assert raw.headers["x-ms-region"] == "East US 2"
    assert raw.headers["apim-request-id"]


def test_generate_with_entra_token_provider(emulator: EmulatorServer) -> None:
    tokens: list[str] = []

    def provider() -> str:
        tokens.append("eyJ.fake.token")
        return tokens[-1]

    with AzureOpenAI(
        azure_endpoint=emulator.base_url, azure_ad_token_provider=provider, api_version=PREVIEW
    ) as client:
        result = client.images.generate(model="gpt-image-1-swc", prompt="entra fox", quality="low")
        assert result.data is not None and result.data[0].b64_json
        assert tokens  # the SDK asked the provider and sent a bearer token
        # A deployment without entra refuses a bearer token with Azure's 401.
        with pytest.raises(openai.AuthenticationError) as err:
            client.images.generate(model="gpt-image-1", prompt="entra fox", quality="low")
        check(AZURE_CODE_MESSAGE, err.value.response.json())


def test_v1_route_with_openai_client(emulator: EmulatorServer) -> None:
    with OpenAI(base_url=f"{emulator.base_url}/openai/v1/", api_key=KEY, timeout=20) as client:
        result = client.images.generate(model="gpt-image-1-mini", prompt="v1 fox", output_format="webp")
        assert result.output_format == "webp" and result.quality == "medium" and result.size == "1024x1024"
        assert result.data is not None and _png(result.data[0].b64_json).format == "WEBP"


def test_v1_edit_with_openai_client(emulator: EmulatorServer) -> None:
    image, mask = _mask_pair()
    with OpenAI(base_url=f"{emulator.base_url}/openai/v1/", api_key=KEY, timeout=20) as client:
        result = client.images.edit(
            model="gpt-image-1",
            image=("in.png", image, "image/png"),
            mask=("mask.png", mask, "image/png"),
            prompt="v1 edit",
            quality="low",
            output_format="webp",
        )
    assert result.data is not None and _png(result.data[0].b64_json).format == "WEBP"
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens > 0


def _mask_pair() -> tuple[bytes, bytes]:
    base = Image.new("RGB", (1024, 1024), (10, 120, 200))
    for x in range(0, 1024, 64):
        base.paste((200, 30, 30), (x, 0, x + 32, 1024))
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (256, 256, 768, 768))
    out = []
    for img in (base, mask):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out[0], out[1]


def test_edit_with_mask_keeps_unmasked_pixels(azure: AzureOpenAI) -> None:
    image, mask = _mask_pair()
    raw = azure.images.with_raw_response.edit(
        model="gpt-image-1",
        image=("in.png", image, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="add a ball",
        quality="low",
    )
    body = raw.http_response.json()
    check(GENERATE_IMAGES_RESPONSE, body)
    assert shape_covers(body, EDIT_EXAMPLE_RESPONSE) == []
    out = _png(body["data"][0]["b64_json"]).convert("RGB")
    original = Image.open(io.BytesIO(image)).convert("RGB")
    assert out.getpixel((10, 10)) == original.getpixel((10, 10))
    assert out.getpixel((1000, 900)) == original.getpixel((1000, 900))
    inside = [out.getpixel((x, 300)) != original.getpixel((x, 300)) for x in range(260, 760, 10)]
    assert all(inside)
    assert body["usage"]["input_tokens_details"]["image_tokens"] > 0


def test_edit_with_several_images_and_streaming(azure: AzureOpenAI) -> None:
    image, _ = _mask_pair()
    stream = azure.images.edit(
        model="gpt-image-1",
        image=[("a.png", image, "image/png"), ("b.png", image, "image/png")],
        prompt="merge them",
        quality="low",
        stream=True,
        partial_images=1,
    )
    types = [event.type for event in stream]
    assert types == ["image_edit.partial_image", "image_edit.completed"]


def test_generate_streaming_events(emulator: EmulatorServer) -> None:
    with httpx.Client(base_url=emulator.base_url, timeout=20) as c:
        r = c.post(
            f"/openai/deployments/gpt-image-1/images/generations?api-version={PREVIEW}",
            headers={"api-key": KEY},
            json={"prompt": "stream fox", "quality": "low", "stream": True, "partial_images": 2},
        )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [block for block in r.text.split("\n\n") if block]
    parsed = [json.loads(block.split("data: ", 1)[1]) for block in events]
    assert [e["type"] for e in parsed] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    for event in parsed[:2]:
        check(PARTIAL_EVENT, event)
    check(COMPLETED_EVENT, parsed[2])
    assert [e.get("partial_image_index") for e in parsed[:2]] == [0, 1]
    assert parsed[2]["usage"]["output_tokens"] == 272 + 2 * 100


def test_sdk_stream_parses(azure: AzureOpenAI) -> None:
    stream = azure.images.generate(
        model="gpt-image-1", prompt="sdk stream", quality="low", stream=True, partial_images=1
    )
    events = list(stream)
    assert [e.type for e in events] == ["image_generation.partial_image", "image_generation.completed"]
    completed = events[-1]
    assert completed.type == "image_generation.completed" and completed.usage.output_tokens == 372


def test_dalle3_matches_the_azure_example(azure: AzureOpenAI, emulator: EmulatorServer) -> None:
    with AzureOpenAI(azure_endpoint=emulator.base_url, api_key=KEY, api_version="2024-10-21") as client:
        raw = client.images.with_raw_response.generate(model="dall-e-3", **DALLE3_EXAMPLE_REQUEST)
    body = raw.http_response.json()
    check(GENERATE_IMAGES_RESPONSE, body)
    assert shape_covers(body, DALLE3_EXAMPLE_RESPONSE) == []
    url = body["data"][0]["url"]
    assert url.startswith(emulator.base_url + "/private/images/")
    assert _png(base64.b64encode(httpx.get(url).content).decode()).size == (1024, 1024)


def test_dalle2_b64(emulator: EmulatorServer) -> None:
    with AzureOpenAI(azure_endpoint=emulator.base_url, api_key=KEY, api_version="2024-10-21") as client:
        result = client.images.generate(
            model="dalle2", prompt="small", size="256x256", response_format="b64_json"
        )
    assert result.data is not None and _png(result.data[0].b64_json).size == (256, 256)


def test_content_filter_bad_request_carries_inner_error(emulator: EmulatorServer) -> None:
    client = AzureOpenAI(azure_endpoint=emulator.base_url, api_key=KEY, api_version="2024-10-21")
    with client, pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model="dall-e-3", prompt="a massacre in the square")
    exc = err.value
    assert exc.code == "content_policy_violation"
    assert isinstance(exc.body, dict)
    results = exc.body["inner_error"]["content_filter_results"]
    assert results["violence"] == {"filtered": True, "severity": "high"}
    body = exc.response.json()
    check(DALLE_ERROR_RESPONSE, body)
    assert shape_covers(body, CONTENT_FILTER_EXAMPLE) == []


def test_not_found_and_authentication(emulator: EmulatorServer, azure: AzureOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        azure.images.generate(model="no-such-deployment", prompt="x")
    assert missing.value.code == "DeploymentNotFound"
    bad = AzureOpenAI(azure_endpoint=emulator.base_url, api_key="wrong", api_version=PREVIEW)
    with bad, pytest.raises(openai.AuthenticationError) as denied:
        bad.images.generate(model="gpt-image-1", prompt="x")
    assert denied.value.status_code == 401 and denied.value.code == "401"


def test_rate_limit_retry_after_is_honoured(emulator: EmulatorServer, admin: httpx.Client) -> None:
    assert (
        admin.put(
            "/_emulator/deployments/faulty/faults", json=[{"kind": "status", "status": 429, "count": 1}]
        ).status_code
        == 200
    )
    before = _counters(admin, "faulty")
    with AzureOpenAI(
        azure_endpoint=emulator.base_url, api_key=KEY, api_version=PREVIEW, max_retries=2
    ) as client:
        result = client.images.generate(model="faulty", prompt="retry me", quality="low")
    assert result.data is not None
    after = _counters(admin, "faulty")
    assert after["rate_limited"] - before["rate_limited"] == 1
    assert after["retried_requests"] - before["retried_requests"] == 1
    assert after["max_retry_count"] >= 1
    assert after["images_billed"] - before["images_billed"] == 1


def test_quota_429_reaches_the_caller_with_retry_after(emulator: EmulatorServer) -> None:
    with AzureOpenAI(
        azure_endpoint=emulator.base_url, api_key=KEY, api_version=PREVIEW, max_retries=0
    ) as client:
        seen: list[openai.RateLimitError] = []
        for _ in range(4):
            try:
                client.images.generate(model="tiny", prompt="burst", quality="low")
            except openai.RateLimitError as exc:
                seen.append(exc)
    assert seen, "a 1-request window must refuse a burst of 4"
    exc = seen[0]
    assert exc.code == "429"
    assert exc.response.headers["retry-after"] == "1"
    assert exc.response.headers["retry-after-ms"] == "1000"
    check(AZURE_CODE_MESSAGE, exc.response.json())


def test_server_errors_and_dropped_connections(emulator: EmulatorServer, admin: httpx.Client) -> None:
    script = [{"kind": "status", "status": 503, "count": 1}, {"kind": "outage", "mode": "refuse", "count": 1}]
    admin.put("/_emulator/deployments/faulty/faults", json=script)
    with AzureOpenAI(
        azure_endpoint=emulator.base_url, api_key=KEY, api_version=PREVIEW, max_retries=0
    ) as client:
        with pytest.raises(openai.InternalServerError) as err:
            client.images.generate(model="faulty", prompt="x", quality="low")
        assert err.value.status_code == 503 and err.value.code == "server_error"
        with pytest.raises(openai.APIConnectionError):
            client.images.generate(model="faulty", prompt="x", quality="low")
    admin.put("/_emulator/deployments/faulty/faults", json=[{"kind": "drop_mid_body", "count": 1}])
    before = _counters(admin, "faulty")
    with (
        AzureOpenAI(
            azure_endpoint=emulator.base_url, api_key=KEY, api_version=PREVIEW, max_retries=0
        ) as client,
        pytest.raises(openai.APIConnectionError),
    ):
        client.images.generate(model="faulty", prompt="x", quality="low")
    after = _counters(admin, "faulty")
    assert after["images_billed"] - before["images_billed"] == 1  # generated, then the body was cut


def test_hang_times_out_the_client_and_is_billed(emulator: EmulatorServer, admin: httpx.Client) -> None:
    admin.put("/_emulator/deployments/faulty/faults", json=[{"kind": "hang", "delay_s": 60, "count": 1}])
    before = _counters(admin, "faulty")
    with (
        AzureOpenAI(
            azure_endpoint=emulator.base_url, api_key=KEY, api_version=PREVIEW, max_retries=0, timeout=0.5
        ) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.images.generate(model="faulty", prompt="x", quality="low")
    after = _counters(admin, "faulty")
    assert after["images_billed"] - before["images_billed"] == 1
    assert (
        after["requests"]["by_outcome"].get("fault_hang", 0)
        - before["requests"]["by_outcome"].get("fault_hang", 0)
        == 1
    )


def test_chat_completion_for_prompt_rewriting(azure: AzureOpenAI) -> None:
    result = azure.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Rewrite the user's image prompt."},
            {"role": "user", "content": "a fox"},
        ],
    )
    assert (
        result.choices[0].message.content
        == "a fox, highly detailed, balanced composition, soft natural light"
    )
    assert result.usage is not None and result.usage.completion_tokens > 0


# --- the same calls through each of the three client set-ups -----------------------------------


@dataclass
class Flavour:
    name: str
    client: AzureOpenAI | OpenAI
    deployment: str


@pytest.fixture(params=["azure-key", "azure-entra", "openai-v1"])
def flavour(request: pytest.FixtureRequest, emulator: EmulatorServer) -> Iterator[Flavour]:
    base = emulator.base_url
    client: AzureOpenAI | OpenAI
    if request.param == "azure-key":
        client, deployment = (
            AzureOpenAI(azure_endpoint=base, api_key=KEY, api_version=PREVIEW, timeout=20),
            "gpt-image-1",
        )
    elif request.param == "azure-entra":
        client = AzureOpenAI(
            azure_endpoint=base,
            azure_ad_token_provider=lambda: "eyJ.entra.token",
            api_version=PREVIEW,
            timeout=20,
        )
        deployment = "gpt-image-1-swc"
    else:
        client, deployment = OpenAI(base_url=f"{base}/openai/v1/", api_key=KEY, timeout=20), "gpt-image-1"
    with client:
        yield Flavour(request.param, client, deployment)


def test_matrix_generate(flavour: Flavour) -> None:
    result = flavour.client.images.generate(model=flavour.deployment, prompt="matrix fox", quality="low", n=2)
    assert result.data is not None and len(result.data) == 2
    assert {_png(d.b64_json).size for d in result.data} == {(1024, 1024)}
    assert result.usage is not None and result.usage.output_tokens == 2 * 272


def test_matrix_edit_with_mask(flavour: Flavour) -> None:
    image, mask = _mask_pair()
    result = flavour.client.images.edit(
        model=flavour.deployment,
        image=("in.png", image, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="matrix edit",
        quality="low",
    )
    assert result.data is not None
    out = _png(result.data[0].b64_json).convert("RGB")
    original = Image.open(io.BytesIO(image)).convert("RGB")
    assert out.getpixel((100, 100)) == original.getpixel((100, 100))
    assert out.getpixel((300, 512)) != original.getpixel((300, 512)) or out.getpixel(
        (301, 600)
    ) != original.getpixel((301, 600))


def test_matrix_stream(flavour: Flavour) -> None:
    events = list(
        flavour.client.images.generate(
            model=flavour.deployment, prompt="matrix stream", quality="low", stream=True, partial_images=2
        )
    )
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]


def test_matrix_errors(flavour: Flavour, admin: httpx.Client) -> None:
    client = flavour.client.with_options(max_retries=0)
    with pytest.raises(openai.BadRequestError) as filtered:
        client.images.generate(model=flavour.deployment, prompt="a massacre", quality="low")
    assert isinstance(filtered.value.body, dict)
    assert filtered.value.body["inner_error"]["content_filter_results"]["violence"]["filtered"] is True
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="missing-deployment", prompt="x")
    admin.put(
        "/_emulator/deployments/faulty/faults", json=[{"kind": "status", "status": 429, "retry_after_s": 3}]
    )
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(model="faulty", prompt="x", quality="low")
    assert limited.value.response.headers["retry-after"] == "3"


def test_stream_error_event_raises_api_error(emulator: EmulatorServer, admin: httpx.Client) -> None:
    admin.put("/_emulator/deployments/faulty/faults", json=[{"kind": "stream_error", "count": 1}])
    with AzureOpenAI(
        azure_endpoint=emulator.base_url, api_key=KEY, api_version=PREVIEW, max_retries=0
    ) as client:
        seen: list[str] = []
        with pytest.raises(openai.APIError, match="An error occurred"):
            for event in client.images.generate(
                model="faulty", prompt="x", quality="low", stream=True, partial_images=1
            ):
                seen.append(event.type)
    assert seen == ["image_generation.partial_image"]

"""Parameters per model: every bad request gets Azure's 400 naming the parameter, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.support import KEY, AppFactory, edit_url, gen_url
from imagegate.emulator import DeploymentSpec, EmulatorConfig, create_emulator_app

V1 = "/openai/v1/images/generations"

CASES: list[tuple[str, str, dict[str, Any], str | None, str | None]] = [
    # (deployment, api-version, body, param, code)
    ("gpt-image-1", "2025-04-01-preview", {}, "prompt", "missing_required_parameter"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": ""}, "prompt", "string_below_min_length"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": 5}, "prompt", "invalid_type"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "x" * 32001}, "prompt", "string_above_max_length"),
    ("dall-e-3", "2024-10-21", {"prompt": "x" * 4001}, "prompt", "string_above_max_length"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "n": 0}, "n", "integer_below_min_value"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "n": 11}, "n", "integer_above_max_value"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "n": True}, "n", "invalid_type"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "n": 1.5}, "n", "invalid_type"),
    ("dall-e-3", "2024-10-21", {"prompt": "p", "n": 2}, "n", "integer_above_max_value"),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "size": "1792x1024"}, "size", "invalid_value"),
    ("dall-e-3", "2024-10-21", {"prompt": "p", "size": "1536x1024"}, "size", "invalid_value"),
    ("dall-e-3", "2024-10-21", {"prompt": "p", "size": "auto"}, "size", "invalid_value"),
    ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "1000x1000"}, "size", "invalid_value"),
    ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "3840x1024"}, "size", "invalid_value"),
    ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "4096x2304"}, "size", "invalid_value"),
    ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "big"}, "size", "invalid_value"),
    ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "²x²"}, "size", "invalid_value"),
    (
        "gpt-image-2",
        "2025-04-01-preview",
        {"prompt": "p", "size": "１０２４x１０２４"},
        "size",
        "invalid_value",
    ),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "quality": "hd"}, "quality", "invalid_value"),
    ("dall-e-3", "2024-10-21", {"prompt": "p", "quality": "high"}, "quality", "invalid_value"),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "output_format": "webp"},
        "output_format",
        "invalid_value",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "output_format": "gif"},
        "output_format",
        "invalid_value",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "output_compression": 50},
        "output_compression",
        "invalid_value",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "output_format": "jpeg", "output_compression": 101},
        "output_compression",
        "integer_above_max_value",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "output_format": "jpeg", "background": "transparent"},
        "background",
        "invalid_value",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "moderation": "high"},
        "moderation",
        "invalid_value",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "style": "vivid"},
        "style",
        "unsupported_parameter",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "response_format": "b64_json"},
        "response_format",
        "unsupported_parameter",
    ),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "stream": "yes"}, "stream", "invalid_type"),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "partial_images": 4},
        "partial_images",
        "integer_above_max_value",
    ),
    (
        "gpt-image-1",
        "2025-04-01-preview",
        {"prompt": "p", "input_fidelity": "high"},
        "input_fidelity",
        "unknown_parameter",
    ),
    ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "foo": 1}, "foo", "unknown_parameter"),
    ("dall-e-3", "2024-10-21", {"prompt": "p", "style": "loud"}, "style", "invalid_value"),
    ("dall-e-3", "2024-10-21", {"prompt": "p", "response_format": "png"}, "response_format", "invalid_value"),
    (
        "dall-e-3",
        "2024-10-21",
        {"prompt": "p", "output_format": "png"},
        "output_format",
        "unsupported_parameter",
    ),
    ("dall-e-3", "2024-10-21", {"prompt": "p", "background": "auto"}, "background", "unsupported_parameter"),
]


@pytest.mark.parametrize(("deployment", "version", "body", "param", "code"), CASES)
async def test_bad_parameters(
    client: httpx.AsyncClient, deployment: str, version: str, body: dict[str, Any], param: str, code: str
) -> None:
    r = await client.post(gen_url(deployment, version), headers=KEY, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    if "Invalid value" in error["message"] and isinstance(body.get(param), str):
        assert repr(body[param]) in error["message"]  # names the value it refuses


@pytest.mark.parametrize(
    ("deployment", "version", "body"),
    [
        ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "3840x2160"}),
        ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "2160x3840"}),
        ("gpt-image-2", "2025-04-01-preview", {"prompt": "p", "size": "1024x3072"}),
        ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "n": None, "user": "u1"}),
        ("gpt-image-1", "2025-04-01-preview", {"prompt": "p", "model": "anything", "moderation": "low"}),
        (
            "gpt-image-1",
            "2025-04-01-preview",
            {"prompt": "p", "output_format": "jpeg", "output_compression": 40},
        ),
        ("dall-e-3", "2024-02-01", {"prompt": "p", "size": "1792x1024", "quality": "hd", "style": "vivid"}),
    ],
)
async def test_good_parameters(
    client: httpx.AsyncClient, deployment: str, version: str, body: dict[str, Any]
) -> None:
    if deployment.startswith("gpt"):
        body = {"quality": "low", **body}
    r = await client.post(gen_url(deployment, version), headers=KEY, json=body)
    assert r.status_code == 200, r.text


async def test_webp_is_accepted_on_v1_only(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-image-1", "prompt": "p", "output_format": "webp", "quality": "low"}
    assert (await client.post(V1, headers=KEY, json=body)).status_code == 200
    dated = await client.post(gen_url(), headers=KEY, json={k: v for k, v in body.items() if k != "model"})
    assert dated.status_code == 400 and dated.json()["error"]["param"] == "output_format"


@pytest.mark.parametrize("raw", [b"{bad", b"", b"[1,2]", b'"prompt"', b"null", b"\xff\xfe"])
async def test_malformed_bodies_get_a_400(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post(gen_url(), headers={**KEY, "content-type": "application/json"}, content=raw)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
_fields = st.sampled_from(
    [
        "prompt",
        "n",
        "size",
        "quality",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "style",
        "response_format",
        "stream",
        "partial_images",
        "user",
        "model",
        "input_fidelity",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(_fields, _json, max_size=6), deployment=st.sampled_from(["gpt-image-1", "dall-e-3"])
)
async def test_random_bodies_never_500(body: dict[str, Any], deployment: str) -> None:
    app = create_emulator_app(time_scale=0)
    version = "2025-04-01-preview"  # serves both models
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as c:
        r = await c.post(gen_url(deployment, version), headers=KEY, json=body)
    assert r.status_code in (200, 400), r.text
    assert "error" in r.json() or "data" in r.json()


async def test_gpt_image_15_and_dalle2(make_app: AppFactory) -> None:
    cfg = EmulatorConfig(
        deployments=(
            DeploymentSpec(name="g15", model="gpt-image-1.5", image_bytes="small"),
            DeploymentSpec(name="d2", model="dall-e-2", image_bytes="small"),
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(cfg)), base_url="http://e") as c:
        r = await c.post(gen_url("g15"), headers=KEY, json={"prompt": "p", "n": 2, "size": "1024x1536"})
        assert r.status_code == 200 and r.json()["usage"]["output_tokens"] == 2 * 6240  # high by default
        r = await c.post(gen_url("g15"), headers=KEY, json={"prompt": "p", "n": 11})
        assert r.json()["error"]["param"] == "n"
        v = "2024-10-21"
        r = await c.post(gen_url("d2", v), headers=KEY, json={"prompt": "p", "n": 3, "size": "512x512"})
        assert r.status_code == 200, r.text
        items = r.json()["data"]
        assert len(items) == 3 and all(set(i) == {"url"} for i in items) and "usage" not in r.json()
        for body, param in (
            ({"prompt": "x" * 1001}, "prompt"),
            ({"prompt": "p", "size": "1792x1024"}, "size"),
            ({"prompt": "p", "quality": "hd"}, "quality"),
            ({"prompt": "p", "style": "vivid"}, "style"),
        ):
            r = await c.post(gen_url("d2", v), headers=KEY, json=body)
            assert (r.status_code, r.json()["error"]["param"]) == (400, param)
        r = await c.post(gen_url("d2", "2024-02-01"), headers=KEY, json={"prompt": "p"})
        assert (
            r.json()["error"]["code"] == "OperationNotSupported"
        )  # dall-e-2 deployments need 2024-05-01-preview+


_form_fields = st.dictionaries(
    st.sampled_from(
        [
            "prompt",
            "n",
            "size",
            "quality",
            "stream",
            "partial_images",
            "output_format",
            "background",
            "input_fidelity",
            "output_compression",
            "user",
            "response_format",
            "mystery",
        ]
    ),
    st.text(max_size=12),
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(fields=_form_fields)
async def test_random_edit_forms_never_500(fields: dict[str, str]) -> None:
    app = create_emulator_app(time_scale=0)
    files = [("image", ("a.png", _TINY_PNG, "image/png"))]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as c:
        r = await c.post(edit_url(), headers=KEY, files=files, data=fields)
    assert r.status_code in (200, 400), r.text


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


_TINY_PNG = _tiny_png()

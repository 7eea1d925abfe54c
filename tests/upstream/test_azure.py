from __future__ import annotations

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate.errors import (
    ContentFiltered,
    ImageGateError,
    InvalidRequest,
    RateLimited,
    UpstreamFailed,
    UpstreamNotSent,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from imagegate.types import EditRequest, ImageRequest, InputImage
from imagegate.upstream.azure import Payload, SSEDecoder, classify, parse_retry_after, wire_request

from .fakes import CATALOG, dep, json_response, ok_body

G1 = CATALOG.get("gpt-image-1")


def test_deployment_route() -> None:
    wire = wire_request(dep("east", deployment="img1"), ImageRequest(prompt="fox", size="1024x1024"), G1)
    assert wire.url == "https://east.openai.azure.com/openai/deployments/img1/images/generations"
    assert wire.params == {"api-version": "2025-04-01-preview"}
    assert wire.content is not None
    body = orjson.loads(wire.content)
    assert body == {"prompt": "fox", "n": 1, "size": "1024x1024"}  # nothing not given is sent


def test_v1_route_puts_deployment_in_model() -> None:
    wire = wire_request(dep("east", route="v1", api_version=None), ImageRequest(prompt="fox"), G1)
    assert wire.url == "https://east.openai.azure.com/openai/v1/images/generations"
    assert wire.params == {}
    assert wire.content is not None and orjson.loads(wire.content)["model"] == "east"


def test_openai_platform_route() -> None:
    d = dep("platform", kind="openai", endpoint="https://api.openai.com", api_version=None)
    wire = wire_request(d, ImageRequest(prompt="fox"), G1)
    assert wire.url == "https://api.openai.com/v1/images/generations"
    assert wire.content is not None and orjson.loads(wire.content)["model"] == "gpt-image-1"


def test_dalle_asks_for_b64() -> None:
    wire = wire_request(dep(model="dall-e-3"), ImageRequest(prompt="fox"), CATALOG.get("dall-e-3"))
    assert wire.content is not None and orjson.loads(wire.content)["response_format"] == "b64_json"


def test_edit_is_multipart_with_image_array_and_mask() -> None:
    req = EditRequest(
        prompt="hat",
        images=(InputImage(data=b"A", filename="a.png"), InputImage(data=b"B", filename="b.png")),
        mask=InputImage(data=b"M", filename="m.png"),
        input_fidelity="high",
    )
    wire = wire_request(dep(), req, G1)
    assert wire.url.endswith("/images/edits")
    assert wire.files is not None and [name for name, _ in wire.files] == ["image[]", "image[]", "mask"]
    assert wire.data is not None and wire.data["input_fidelity"] == "high" and wire.data["n"] == "1"
    single = wire_request(dep(), EditRequest(prompt="hat", images=(InputImage(data=b"A"),)), G1)
    assert single.files is not None and single.files[0][0] == "image"
    request = httpx.Request("POST", wire.url, data=wire.data, files=wire.files)
    assert request.headers["content-type"].startswith("multipart/form-data")


def resp(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return json_response(status, body, headers)


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, "", 1.5),
        ({"retry-after": "9"}, "", 9.0),
        ({}, "Requests ... have exceeded call rate limit. Please retry after 23 seconds.", 23.0),
        ({}, "Rate limit is exceeded. Try again in 50 seconds.", 50.0),
        ({}, "slow down", None),
    ],
)
def test_retry_after_sources(headers: dict[str, str], message: str, expected: float | None) -> None:
    assert parse_retry_after(headers, message) == expected


def test_retry_after_http_date() -> None:
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2026 07:28:10 GMT"}, now=1792567680.0) == 10.0


def test_429() -> None:
    err = classify(
        "east",
        resp(
            429, {"error": {"code": "429", "message": "Please retry after 7 seconds."}}, {"retry-after": "7"}
        ),
    )
    assert isinstance(err, RateLimited) and err.retry_after_s == 7.0


def test_content_policy_violation_with_categories_and_revised_prompt() -> None:
    body = {
        "error": {
            "code": "content_policy_violation",
            "inner_error": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": True, "severity": "low"},
                },
                "revised_prompt": "A dramatic scene.",
            },
            "message": "Your request was rejected as a result of our safety system.",
            "type": "invalid_request_error",
        }
    }
    err = classify("east", resp(400, body))
    assert isinstance(err, ContentFiltered)
    assert err.categories == ("violence",) and err.revised_prompt == "A dramatic scene."
    assert err.upstream_code == "content_policy_violation"
    # Azure's body does not say whether the prompt or the output was filtered; we don't guess
    # from the message text.
    assert err.stage == "unknown"


def test_moderation_blocked_shapes() -> None:
    direct = {
        "error": {
            "message": "rejected. safety_violations=[sexual].",
            "type": "image_generation_user_error",
            "code": "moderation_blocked",
            "moderation_details": {"moderation_stage": "output", "categories": ["sexual"]},
        }
    }
    err = classify("east", resp(400, direct))
    assert isinstance(err, ContentFiltered) and err.categories == ("sexual",) and err.stage == "output"
    prompt_stage = {"error": {**direct["error"], "moderation_details": {"moderation_stage": "input"}}}
    assert isinstance(err := classify("east", resp(400, prompt_stage)), ContentFiltered)
    assert err.stage == "prompt"
    relayed = {
        "error": {
            "message": "rejected ... safety_violations=[violence, self-harm]. x",
            "code": "moderation_blocked",
            "param": "",
        }
    }
    err = classify("east", resp(400, relayed))
    assert isinstance(err, ContentFiltered) and err.categories == ("violence", "self-harm")


def test_classification_is_by_code_not_message() -> None:
    # a message that mentions the safety system but a plain 400 code is not a content-filter hit
    err = classify(
        "east",
        resp(400, {"error": {"code": "invalid_value", "message": "safety system rejected", "param": "size"}}),
    )
    assert isinstance(err, InvalidRequest) and err.field == "size"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            404,
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist.",
                }
            },
            UpstreamRejected,
        ),
        (
            401,
            {"error": {"code": "401", "message": "Access denied due to invalid subscription key"}},
            UpstreamRejected,
        ),
        (403, {"error": {"code": "Forbidden", "message": "blocked"}}, UpstreamRejected),
        (
            500,
            {"error": {"code": "server_error", "message": "An error occurred", "type": "server_error"}},
            UpstreamStatusError,
        ),
        (503, {"error": {"code": "server_error", "message": "busy"}}, UpstreamStatusError),
    ],
)
def test_status_table(status: int, body: object, kind: type[Exception]) -> None:
    err = classify("east", resp(status, body))
    assert isinstance(err, kind)
    assert getattr(err, "status_code", None) == status


def test_malformed_bodies() -> None:
    err = classify("east", httpx.Response(200, content=b"{not json"))
    assert isinstance(err, UpstreamStatusError) and err.upstream_code == "malformed_body"
    err = classify("east", resp(200, {"data": [{"nothing": 1}]}))
    assert isinstance(err, UpstreamStatusError)
    err = classify("east", httpx.Response(502, content=b"<html>bad gateway</html>"))
    assert isinstance(err, UpstreamStatusError) and err.status_code == 502


def test_success_payload() -> None:
    out = classify(
        "east",
        httpx.Response(
            200, content=ok_body(2), headers={"apim-request-id": "req-1", "x-ms-region": "East US 2"}
        ),
    )
    assert isinstance(out, Payload)
    assert (
        len(out.images) == 2
        and out.images[0].format == "png"
        and (out.images[0].width, out.images[0].height) == (32, 16)
    )
    assert out.usage is not None and out.usage.output_tokens == 4160 and out.usage.input_text_tokens == 50
    assert out.request_id == "req-1" and out.region == "East US 2"


def test_transport_exceptions() -> None:
    request = httpx.Request("POST", "https://x")
    assert isinstance(classify("e", httpx.ConnectError("refused", request=request)), UpstreamNotSent)
    assert isinstance(classify("e", httpx.ConnectTimeout("slow", request=request)), UpstreamNotSent)
    assert isinstance(classify("e", httpx.ReadTimeout("late", request=request)), UpstreamTimeout)
    dropped = classify("e", httpx.RemoteProtocolError("closed", request=request))
    assert isinstance(dropped, UpstreamFailed) and not isinstance(dropped, UpstreamTimeout)


def test_sse_decoder() -> None:
    dec = SSEDecoder()
    lines = [
        ": keep-alive",
        "event: image_generation.partial_image",
        'data: {"type":"image_generation.partial_image","b64_json":"AA==","partial_image_index":0}',
        "",
        'data: {"type":"image_generation.completed","b64_json":"AA=="}',
        "",
    ]
    events = [e for e in (dec.feed(line) for line in lines) if e is not None]
    assert [e.event for e in events] == ["image_generation.partial_image", "image_generation.completed"]
    assert events[0].data["partial_image_index"] == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "error",
                    "code",
                    "message",
                    "data",
                    "inner_error",
                    "b64_json",
                    "usage",
                    "content_filter_results",
                    "moderation_details",
                    "categories",
                    "filtered",
                    "param",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(100, 599), json_values | st.binary(max_size=40).map(lambda b: {"raw": b.hex()}), st.booleans()
)
def test_classify_never_raises(status: int, body: object, as_bytes: bool) -> None:
    content = orjson.dumps(body) if not as_bytes else orjson.dumps(body)[:-1]
    out = classify("east", httpx.Response(status, content=content, headers={"retry-after": "x"}))
    assert isinstance(out, Payload | ImageGateError)
    if status >= 300:
        assert isinstance(out, ImageGateError)


@pytest.mark.parametrize(
    ("headers", "request_id"),
    [
        ({"APIM-Request-Id": "apim-1", "X-Request-Id": "x-1", "X-Ms-Region": "East US 2"}, "apim-1"),
        ({"x-request-id": "x-2", "x-ms-region": "East US 2"}, "x-2"),
    ],
)
def test_request_id_and_region_are_read_whatever_their_case(headers: dict[str, str], request_id: str) -> None:
    out = classify("east", httpx.Response(200, content=ok_body(), headers=headers))
    assert isinstance(out, Payload)
    assert (out.request_id, out.region) == (request_id, "East US 2")

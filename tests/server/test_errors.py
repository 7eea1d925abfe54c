"""server/errors.py: every exception of the tree leaves in the OpenAI shape with the right headers."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from imagegate.errors import (
    AuthenticationError,
    BudgetExceeded,
    ConfigError,
    Conflict,
    ContentFiltered,
    ImageGateError,
    InvalidRequest,
    NoDeploymentAvailable,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    StorageError,
    UpstreamFailed,
    UpstreamNotSent,
    UpstreamStatusError,
    UpstreamTimeout,
)
from imagegate.types import AttemptRecord

CASES: list[tuple[ImageGateError, int, str, str | None]] = [
    # exception, status, code, x-should-retry
    (InvalidRequest.for_field("size", "9x9", "one of 1024x1024"), 400, "invalid_request", "false"),
    (ContentFiltered("blocked", categories=["violence"]), 400, "content_policy_violation", "false"),
    (AuthenticationError("no key"), 401, "invalid_api_key", "false"),
    (PermissionDenied("scope"), 403, "permission_denied", "false"),
    (NotFound("no model"), 404, "not_found", "false"),
    (Conflict("other body"), 409, "conflict", "false"),
    (PayloadTooLarge("big"), 413, "payload_too_large", "false"),
    (RateLimited("slow", retry_after_s=2.5), 429, "rate_limit_exceeded", None),
    (
        BudgetExceeded("spent", budget="team-a", limit_usd="10.00", remaining_usd="0.01"),
        429,
        "budget_exceeded",
        "false",
    ),
    (UpstreamNotSent("refused", deployment="eastus"), 503, "upstream_unreachable", "false"),
    (UpstreamFailed("reset"), 502, "upstream_failed", "false"),
    (UpstreamTimeout("late"), 504, "upstream_timeout", "false"),
    (
        UpstreamStatusError("5xx", status_code=500, upstream_code="server_error"),
        502,
        "upstream_failed",
        "false",
    ),
    (NoDeploymentAvailable("all open"), 503, "no_deployment_available", "false"),
    (NoDeploymentAvailable("all busy", retry_after_s=4), 503, "no_deployment_available", None),
    (StorageError("db down"), 503, "storage_error", "false"),
    (ConfigError(["x"]), 500, "config_error", "false"),
]


def _raising_app(app: FastAPI, exc: BaseException) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise exc


@pytest.mark.parametrize(("exc", "status", "code", "should_retry"), CASES)
async def test_tree_errors_render_openai_shape(
    app: FastAPI,
    client: httpx.AsyncClient,
    exc: ImageGateError,
    status: int,
    code: str,
    should_retry: str | None,
) -> None:
    _raising_app(app, exc)
    r = await client.get("/boom")
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["code"] == code
    assert err["message"] == exc.message
    assert err["type"] == exc.error_type
    assert r.headers.get("x-should-retry") == should_retry
    assert r.headers["x-request-id"]


async def test_rate_limited_sets_both_retry_after_headers(app: FastAPI, client: httpx.AsyncClient) -> None:
    _raising_app(app, RateLimited("slow down", retry_after_s=2.5))
    r = await client.get("/boom")
    assert r.headers["retry-after"] == "3"
    assert r.headers["retry-after-ms"] == "2500"


async def test_a_429_the_gateway_already_retried_upstream_tells_the_sdk_not_to_retry(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Azure answered 429 to every attempt the gateway made (retries and fail-over, honouring
    retry-after): the SDK's own two retries would each run that loop again, tripling the
    requests sent into a 429 storm. A key's own rpm (no attempt made) may be retried."""
    exhausted = RateLimited("deployment east answered 429 (rate limited): ...", retry_after_s=1)
    exhausted.attempts = tuple(
        AttemptRecord(number=i, deployment="east", outcome="rate_limit_exceeded", status_code=429)
        for i in (1, 2, 3)
    )
    _raising_app(app, exhausted)
    r = await client.get("/boom")
    assert r.status_code == 429 and r.headers["x-should-retry"] == "false"
    assert r.headers["retry-after"] == "1"


async def test_no_retry_after_when_unknown(app: FastAPI, client: httpx.AsyncClient) -> None:
    _raising_app(app, RateLimited("slow down"))
    r = await client.get("/boom")
    assert "retry-after" not in r.headers
    assert "retry-after-ms" not in r.headers


async def test_budget_error_names_budget_and_remaining(app: FastAPI, client: httpx.AsyncClient) -> None:
    _raising_app(app, BudgetExceeded("over", budget="key:k1/month", limit_usd="5.00", remaining_usd="0.10"))
    err = (await client.get("/boom")).json()["error"]
    assert err["budget"] == "key:k1/month"
    assert err["limit_usd"] == "5.00"
    assert err["remaining_usd"] == "0.10"
    assert err["type"] == "insufficient_quota"


async def test_invalid_request_names_param(app: FastAPI, client: httpx.AsyncClient) -> None:
    _raising_app(app, InvalidRequest.for_field("quality", "ultra", "one of low, medium, high, auto"))
    err = (await client.get("/boom")).json()["error"]
    assert err["param"] == "quality"
    assert "'ultra'" in err["message"] and "medium" in err["message"]


async def test_content_filter_carries_categories(app: FastAPI, client: httpx.AsyncClient) -> None:
    _raising_app(app, ContentFiltered("no", categories=["violence"], revised_prompt="calm", stage="output"))
    err = (await client.get("/boom")).json()["error"]
    assert err["categories"] == ["violence"]
    assert err["stage"] == "output"
    assert err["revised_prompt"] == "calm"


async def test_upstream_status_error_names_upstream_status(app: FastAPI, client: httpx.AsyncClient) -> None:
    _raising_app(
        app, UpstreamStatusError("bad", status_code=500, upstream_code="server_error", deployment="d1")
    )
    err = (await client.get("/boom")).json()["error"]
    assert err["upstream_status"] == 500
    assert err["upstream_code"] == "server_error"
    assert err["deployment"] == "d1"


async def test_unexpected_exception_is_a_bare_500_with_request_id(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    _raising_app(app, RuntimeError("secret sk-THIS-MUST-NOT-LEAK in a message"))
    with caplog.at_level(logging.ERROR, logger="imagegate.server"):
        r = await client.get("/boom", headers={"x-request-id": "abc-123"})
    assert r.status_code == 500
    assert "sk-THIS-MUST-NOT-LEAK" not in r.text
    assert "Traceback" not in r.text and "RuntimeError" not in r.text
    err = r.json()["error"]
    assert err["type"] == "server_error"
    assert err["request_id"] == "abc-123"
    assert "abc-123" in err["message"]
    assert r.headers["x-request-id"] == "abc-123"
    assert any("abc-123" in rec.getMessage() for rec in caplog.records)


class _Body(BaseModel):
    prompt: str = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=10)


async def test_pydantic_validation_is_400_in_openai_shape(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.post("/validate")
    async def validate(body: _Body) -> dict[str, int]:
        return {"n": body.n}

    r = await client.post("/validate", json={"prompt": "x", "n": 99})
    assert r.status_code == 400
    body = r.json()
    assert "detail" not in body
    assert body["error"]["param"] == "n"
    assert body["error"]["code"] == "invalid_request"
    assert "n:" in body["error"]["message"]
    r = await client.post("/validate", json={"n": "x"})
    err = r.json()["error"]
    assert err["param"] in ("prompt", "n")
    assert {e["param"] for e in err["errors"]} == {"prompt", "n"}


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = await client.delete("/healthz")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def _after_attempts(exc: ImageGateError, count: int) -> ImageGateError:
    exc.attempts = tuple(
        AttemptRecord(number=i + 1, deployment="eastus", outcome="rate_limit_exceeded", status_code=429)
        for i in range(count)
    )
    return exc


@pytest.mark.parametrize(
    "exc",
    [
        RateLimited("deployment eastus answered 429", retry_after_s=5),
        NoDeploymentAvailable("every deployment is unavailable", retry_after_s=5),
    ],
)
async def test_after_the_gateways_own_attempts_the_sdk_must_not_retry(
    app: FastAPI, client: httpx.AsyncClient, exc: ImageGateError
) -> None:
    """A 429/503 that the gateway met *upstream*, after spending its own retries: the SDK's two
    retries on top would triple the upstream attempts (and each waits retry-after again)."""
    _raising_app(app, _after_attempts(exc, 3))
    r = await client.get("/boom")
    assert r.headers["x-should-retry"] == "false"
    assert r.headers["x-imagegate-attempts"] == "3"
    assert r.headers["retry-after"] == "5"  # still says when capacity returns, for the caller to decide


async def test_a_per_key_rate_limit_leaves_the_retry_to_the_sdk(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _raising_app(app, RateLimited("key rpm", retry_after_s=5))  # no upstream attempt was made
    r = await client.get("/boom")
    assert "x-should-retry" not in r.headers
    assert "x-imagegate-attempts" not in r.headers

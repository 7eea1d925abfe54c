from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import httpx
import orjson
import pytest

from imagegate.config import DeploymentConfig, RetryConfig
from imagegate.errors import ContentFiltered, RateLimited, UpstreamNotSent, UpstreamRejected, UpstreamTimeout
from imagegate.types import AttemptRecord, ImageRequest, PartialImage
from imagegate.upstream.auth import EntraTokenProvider, auth_for
from imagegate.upstream.client import UpstreamClient

from .fakes import CATALOG, KEY, FakeTime, client_for, dep, entra_dep, json_response, ok_body, png_b64

REQ = ImageRequest(prompt="a red fox", size="1024x1024", quality="high")


async def test_success_carries_everything() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, content=ok_body(), headers={"apim-request-id": "abc", "x-ms-region": "East US 2"}
        )

    result = await client_for(handler).send([dep()], REQ)
    assert result.deployment == "east" and result.model == "gpt-image-1" and result.region == "East US 2"
    assert result.request_id == "abc" and result.usage is not None and result.usage.output_tokens == 4160
    assert [a.outcome for a in result.attempts] == ["ok"]
    (request,) = seen
    assert request.headers["api-key"] == KEY and "authorization" not in request.headers
    assert request.url.params["api-version"] == "2025-04-01-preview"
    timeout = request.extensions["timeout"]
    assert timeout["connect"] == 5.0 and timeout["read"] >= 300  # high quality reads for minutes


async def test_429_retry_after_is_waited_out_then_succeeds() -> None:
    calls = iter(
        [
            json_response(
                429,
                {"error": {"code": "429", "message": "Please retry after 3 seconds."}},
                {"retry-after": "3"},
            ),
            json_response(429, {"error": {"code": "429", "message": "Please retry after 5 seconds."}}),
            httpx.Response(200, content=ok_body()),
        ]
    )
    fake = FakeTime()
    result = await client_for(lambda r: next(calls), fake, RetryConfig(max_attempts=3)).send([dep()], REQ)
    assert fake.sleeps == [3.0, 5.0]  # honoured on every retry, header then message
    assert [a.outcome for a in result.attempts] == ["rate_limit_exceeded", "rate_limit_exceeded", "ok"]
    assert [a.delay_s for a in result.attempts] == [3.0, 5.0, 0.0]
    assert result.latency_s == 8.0


async def test_retry_after_beyond_cap_gives_up_with_it() -> None:
    def handler(r):
        return json_response(429, {"error": {"code": "429", "message": "Please retry after 86400 seconds."}})

    fake = FakeTime()
    with pytest.raises(RateLimited) as info:
        await client_for(handler, fake).send([dep()], REQ)
    assert info.value.retry_after_s == 86400 and fake.sleeps == []
    assert len(info.value.attempts) == 1


async def test_content_filter_not_retried_even_with_other_deployments() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        body = {
            "error": {
                "code": "content_policy_violation",
                "message": "no",
                "inner_error": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_results": {"violence": {"filtered": True, "severity": "high"}},
                },
            }
        }
        return json_response(400, body)

    with pytest.raises(ContentFiltered) as info:
        await client_for(handler).send([dep("east"), dep("west")], REQ)
    assert info.value.categories == ("violence",)
    assert calls == ["east.openai.azure.com"]


async def test_fail_over_counts_as_an_attempt() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("east"):
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, content=ok_body())

    fake = FakeTime()
    result = await client_for(handler, fake).send([dep("east"), dep("west")], REQ)
    assert result.deployment == "west" and fake.sleeps == []
    assert [(a.deployment, a.outcome, a.may_be_billed) for a in result.attempts] == [
        ("east", "upstream_unreachable", False),
        ("west", "ok", True),
    ]


async def test_rejected_deployment_fails_over() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("east"):
            return json_response(404, {"error": {"code": "DeploymentNotFound", "message": "does not exist"}})
        return httpx.Response(200, content=ok_body())

    result = await client_for(handler).send([dep("east"), dep("west")], REQ)
    assert result.deployment == "west" and result.attempts[0].status_code == 404
    with pytest.raises(UpstreamRejected):
        await client_for(handler).send([dep("east")], REQ)


async def test_sent_timeout_is_not_resent_by_default() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("late", request=request)
        return httpx.Response(200, content=ok_body())

    with pytest.raises(UpstreamTimeout) as info:
        await client_for(handler).send([dep()], REQ)
    assert calls == 1 and info.value.attempts[0].may_be_billed
    calls = 0
    result = await client_for(handler, retry=RetryConfig(retry_sent_timeouts=True)).send([dep()], REQ)
    assert calls == 2 and result.attempts[0].outcome == "upstream_timeout"


async def test_backoff_uses_full_jitter_and_deadline() -> None:
    handler = lambda r: json_response(500, {"error": {"code": "server_error", "message": "oops"}})  # noqa: E731
    fake = FakeTime()
    with pytest.raises(Exception) as info:
        await client_for(handler, fake, RetryConfig(max_attempts=4, initial_backoff_s=1.0)).send([dep()], REQ)
    assert fake.sleeps == [0.5, 1.0, 2.0]  # rand 0.5 × 1, 2, 4
    assert len(info.value.attempts) == 4  # type: ignore[attr-defined]
    fake = FakeTime()
    with pytest.raises(Exception, match="oops"):
        await client_for(
            handler, fake, RetryConfig(max_attempts=10, initial_backoff_s=8, deadline_s=10)
        ).send([dep()], REQ)
    assert sum(fake.sleeps) < 10


async def test_streaming_partials_then_final() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert orjson.loads(request.content)["stream"] is True
        events = [
            (
                "image_generation.partial_image",
                {
                    "type": "image_generation.partial_image",
                    "b64_json": png_b64((8, 8)),
                    "partial_image_index": 0,
                },
            ),
            (
                "image_generation.partial_image",
                {
                    "type": "image_generation.partial_image",
                    "b64_json": png_b64((8, 8)),
                    "partial_image_index": 1,
                },
            ),
            (
                "image_generation.completed",
                {
                    "type": "image_generation.completed",
                    "b64_json": png_b64(),
                    "usage": {"input_tokens": 5, "output_tokens": 272, "total_tokens": 277},
                },
            ),
        ]
        text = "".join(f"event: {e}\ndata: {orjson.dumps(d).decode()}\n\n" for e, d in events)
        return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})

    partials: list[PartialImage] = []

    async def on_partial(p: PartialImage) -> None:
        partials.append(p)

    result = await client_for(handler).send(
        [dep()], ImageRequest(prompt="fox", partial_images=2), on_partial=on_partial
    )
    assert [p.index for p in partials] == [0, 1]
    assert result.images[0].width == 32 and result.usage is not None and result.usage.output_tokens == 272


async def test_entra_token_refreshed_before_expiry() -> None:
    class FakeCredential:
        def __init__(self) -> None:
            self.calls = 0

        def get_token(self, *scopes: str) -> tuple[str, int]:
            assert scopes == ("https://cognitiveservices.azure.com/.default",)
            self.calls += 1
            return f"token-{self.calls}", 10_000 + self.calls * 3600

    now = [10_000.0]
    cred = FakeCredential()
    provider = auth_for(entra_dep(), credential_factory=lambda auth: cred, clock=lambda: now[0])
    assert isinstance(provider, EntraTokenProvider)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, content=ok_body())

    client = client_for(handler, auth={"east": provider})
    await client.send([entra_dep()], REQ)
    now[0] += 3000  # 13 000: still > 5 min before 13 600
    await client.send([entra_dep()], REQ)
    now[0] += 400  # 13 400: inside the 5-minute margin → refresh
    await client.send([entra_dep()], REQ)
    assert seen == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    assert "api-key" not in seen and cred.calls == 2


async def test_failing_credential_is_not_sent() -> None:
    class Broken:
        def get_token(self, *scopes: str) -> tuple[str, int]:
            raise RuntimeError("no identity")

    provider = auth_for(entra_dep(), credential_factory=lambda auth: Broken())
    client = client_for(lambda r: httpx.Response(200, content=ok_body()), auth={"east": provider})
    with pytest.raises(UpstreamNotSent, match="Entra"):
        await client.send([entra_dep()], REQ)


async def test_keys_and_prompts_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    calls = iter(
        [
            json_response(500, {"error": {"code": "server_error", "message": "x"}}),
            httpx.Response(200, content=ok_body()),
        ]
    )
    result = await client_for(lambda r: next(calls)).send([dep()], REQ)
    assert "upstream attempt 1" in caplog.text and "status=500" in caplog.text
    assert KEY not in caplog.text and "a red fox" not in caplog.text
    assert KEY not in repr(result) and "a red fox" not in repr(REQ)


async def test_a_failed_attempt_is_logged_at_info_a_success_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="imagegate.upstream")
    calls = iter(
        [
            json_response(500, {"error": {"code": "server_error", "message": "x"}}),
            httpx.Response(200, content=ok_body()),
        ]
    )
    await client_for(lambda r: next(calls)).send([dep()], REQ)
    levels = {r.getMessage().split(" deployment=")[0]: r.levelname for r in caplog.records}
    assert levels == {"upstream attempt 1": "INFO", "upstream attempt 2": "DEBUG"}


async def test_probe_reads_400_as_healthy_without_generating() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        assert body["prompt"] == ""
        if request.headers.get("api-key") != KEY:
            return json_response(401, {"error": {"code": "401", "message": "Access denied"}})
        if request.url.host.startswith("ghost"):
            return json_response(404, {"error": {"code": "DeploymentNotFound", "message": "no"}})
        return json_response(400, {"error": {"code": "invalid_value", "message": "prompt too short"}})

    client = client_for(handler)
    good = await client.probe(dep())
    assert good.ok and good.status_code == 400
    missing = await client.probe(dep("ghost"))
    assert not missing.ok and missing.status_code == 404 and "DeploymentNotFound" in missing.detail


async def test_records_carry_request_id_and_remaining_quota() -> None:
    calls = iter(
        [
            json_response(
                503,
                {"error": {"code": "server_error", "message": "x"}},
                {"apim-request-id": "r1", "x-ratelimit-remaining-requests": "0"},
            ),
            httpx.Response(
                200,
                content=ok_body(),
                headers={"apim-request-id": "r2", "x-ratelimit-remaining-requests": "7"},
            ),
        ]
    )
    result = await client_for(lambda r: next(calls)).send([dep()], REQ)
    assert [(a.request_id, a.remaining_requests, a.status_code) for a in result.attempts] == [
        ("r1", 0, 503),
        ("r2", 7, 200),
    ]


@pytest.mark.parametrize("raw", ["²", "--5", "7.5", "", "seven"])
async def test_a_malformed_remaining_requests_header_is_unknown_not_a_crash(raw: str) -> None:
    """The upstream answered (and billed) the image; a header we cannot read must not turn that
    into a failure: ``int("²")`` raised after ``"²".isdigit()`` said yes."""
    headers = [(b"x-ratelimit-remaining-requests", raw.encode())]
    body = httpx.Response(200, content=ok_body(), headers=headers)
    result = await client_for(lambda r: body).send([dep()], REQ)
    assert [(a.outcome, a.remaining_requests) for a in result.attempts] == [("ok", None)]


async def test_hooks_choose_and_hear_every_attempt() -> None:
    heard: list[tuple[str, str]] = []

    class Hooks:
        async def choose(self, plan: Sequence[DeploymentConfig], suggested: int) -> DeploymentConfig:
            return plan[-1]  # routing may pick any deployment of the plan

        async def finished(self, d: DeploymentConfig, record: AttemptRecord) -> None:
            heard.append((d.name, record.outcome))

    calls = iter(
        [
            json_response(500, {"error": {"code": "server_error", "message": "x"}}),
            httpx.Response(200, content=ok_body()),
        ]
    )
    result = await client_for(lambda r: next(calls)).send([dep("east"), dep("west")], REQ, hooks=Hooks())
    assert heard == [("west", "upstream_failed"), ("west", "ok")] and result.deployment == "west"


async def test_time_held_back_by_routing_is_recorded_per_attempt() -> None:
    fake = FakeTime()
    waits = iter([4.0, 0.0])

    class Hooks:
        async def choose(self, plan: Sequence[DeploymentConfig], suggested: int) -> DeploymentConfig:
            await fake.sleep(next(waits))  # routing waits for a quota slot on the same clock
            return plan[0]

        async def finished(self, d: DeploymentConfig, record: AttemptRecord) -> None:
            pass

    calls = iter(
        [
            json_response(500, {"error": {"code": "server_error", "message": "x"}}),
            httpx.Response(200, content=ok_body()),
        ]
    )
    client = client_for(lambda r: next(calls), fake, RetryConfig(max_attempts=2))
    result = await client.send([dep()], REQ, hooks=Hooks())
    assert [a.queued_s for a in result.attempts] == [4.0, 0.0]
    assert all(a.latency_s == 0.0 for a in result.attempts)  # the wait is not upstream latency


async def test_cancelled_attempt_is_reported_to_hooks() -> None:
    heard: list[AttemptRecord] = []

    class Hooks:
        async def choose(self, plan: Sequence[DeploymentConfig], suggested: int) -> DeploymentConfig:
            return plan[0]

        async def finished(self, d: DeploymentConfig, record: AttemptRecord) -> None:
            heard.append(record)

    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(3600)
        raise AssertionError("unreachable")

    client = UpstreamClient(
        httpx.AsyncClient(transport=httpx.MockTransport(hang)), catalog=CATALOG, retry=RetryConfig()
    )
    with anyio.move_on_after(0.05):
        await client.send([dep()], REQ, hooks=Hooks())
    assert [(r.outcome, r.may_be_billed) for r in heard] == [("cancelled", True)]

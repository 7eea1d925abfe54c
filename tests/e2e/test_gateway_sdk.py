"""The official ``openai`` SDK (``OpenAI`` and ``AzureOpenAI``, httpx2) against the gateway under
uvicorn on 127.0.0.1; the gateway's upstream is the built-in emulator, in-process."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import default_emulator_config
from imagegate.ports import KeyScope
from imagegate.server.app import create_app
from imagegate.server.background import serve_in_thread
from imagegate.server.settings import ServerSettings
from imagegate.stores.memory import MemoryKeyStore

pytestmark = pytest.mark.e2e

API_VERSION = "2025-04-01-preview"
UPSTREAM_KEY = "emulator-key"  # the emulated deployments' Azure key: must never leak


def _png_bytes(width: int = 1024, height: int = 1024) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 200, 10, 255)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(base URL, a full-scope virtual key, a key limited to gpt-image-1-mini)."""
    keys = MemoryKeyStore()
    now = datetime.now(UTC)
    full = asyncio.run(keys.create("e2e", KeyScope(budget_usd=Decimal("100")), now)).plaintext
    mini = asyncio.run(keys.create("mini-only", KeyScope(models=("gpt-image-1-mini",), rpm=2), now)).plaintext
    settings = ServerSettings(
        data_dir=tmp_path_factory.mktemp("gateway"), url_secret=b"e2e-secret-of-16-bytes"
    )
    app = create_app(keys=keys, settings=settings)
    with serve_in_thread(app) as url:
        yield url, full, mini


def _decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_openai_client_generates(gateway: tuple[str, str, str]) -> None:
    url, key, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    result = client.images.generate(model="gpt-image-1", prompt="a red fox", size="1024x1536", quality="low")
    assert result.data is not None and len(result.data) == 1
    assert _decode(result.data[0].b64_json).size == (1024, 1536)
    assert result.usage is not None and result.usage.output_tokens > 0
    raw = client.images.with_raw_response.generate(model="default", prompt="a fox", quality="low")
    assert raw.headers["x-imagegate-deployment"] in ("gpt-image-1", "gpt-image-1-swc")
    assert Decimal(raw.headers["x-imagegate-cost-usd"]) > 0
    assert raw.headers["x-request-id"].startswith("req_")


def test_azure_client_generates_and_edits(gateway: tuple[str, str, str]) -> None:
    url, key, _ = gateway
    client = openai.AzureOpenAI(azure_endpoint=url, api_version=API_VERSION, api_key=key, max_retries=0)
    result = client.images.generate(model="gpt-image-1-mini", prompt="a lighthouse", n=2, quality="low")
    assert result.data is not None and len(result.data) == 2
    edited = client.images.edit(
        model="gpt-image-1",
        image=[("a.png", _png_bytes(), "image/png"), ("b.png", _png_bytes(), "image/png")],
        mask=("m.png", _png_bytes(), "image/png"),
        prompt="add a hat",
        quality="low",
    )
    assert edited.data is not None
    assert _decode(edited.data[0].b64_json).format == "PNG"


def test_azure_client_with_bearer_token(gateway: tuple[str, str, str]) -> None:
    url, key, _ = gateway
    client = openai.AzureOpenAI(
        azure_endpoint=url, api_version=API_VERSION, azure_ad_token=key, max_retries=0
    )
    result = client.images.generate(model="default", prompt="a kite", quality="low")
    assert result.data is not None


def test_streaming_partial_images(gateway: tuple[str, str, str]) -> None:
    url, key, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    stream = client.images.generate(
        model="gpt-image-1", prompt="a boat", quality="low", stream=True, partial_images=2
    )
    types = [event.type for event in stream]
    assert types[-1] == "image_generation.completed"
    assert types.count("image_generation.partial_image") == 2


def test_errors_map_to_sdk_exceptions(gateway: tuple[str, str, str]) -> None:
    url, key, mini = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-1", prompt="x", size="999x999")
    assert bad.value.param == "size"
    assert "1024x1024" in bad.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{url}/v1", api_key="ig-wrong-key-123456789012345", max_retries=0
        ).images.generate(prompt="x")
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=f"{url}/v1", api_key=mini, max_retries=0).images.generate(
            model="gpt-image-1", prompt="x"
        )
    with pytest.raises(openai.BadRequestError) as unknown:
        client.images.generate(model="no-such-model", prompt="x")
    assert unknown.value.param == "model"


def test_no_secret_reaches_logs_errors_or_metrics(
    gateway: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, key, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG):
        client.images.generate(model="gpt-image-1", prompt="a cat", quality="low")
        for bad_key in (key + "x", key[:-1]):
            try:
                openai.OpenAI(base_url=f"{url}/v1", api_key=bad_key, max_retries=0).images.generate(
                    prompt="x"
                )
            except openai.APIStatusError as exc:
                bodies.append(exc.response.text)
        try:
            client.images.generate(model="gpt-image-1", prompt="x", size="1x1")
        except openai.APIStatusError as exc:
            bodies.append(exc.response.text)
        metrics = httpx.get(f"{url}/metrics").text
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert logs, "expected some log lines to inspect"
    for secret in (key, UPSTREAM_KEY):
        assert secret not in logs
        assert secret not in metrics
        assert all(secret not in body for body in bodies)
    assert "imagegate_requests_total" in metrics


def test_response_format_url_for_a_gpt_image_model(gateway: tuple[str, str, str]) -> None:
    url, key, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    result = client.images.generate(model="gpt-image-1", prompt="a owl", quality="low", response_format="url")
    assert result.data is not None and result.data[0].url is not None
    assert result.data[0].b64_json is None
    fetched = httpx.get(result.data[0].url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (1024, 1024)


def test_idempotency_key_through_the_sdk(gateway: tuple[str, str, str]) -> None:
    url, key, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    headers = {"Idempotency-Key": "e2e-order-1"}
    first = client.images.with_raw_response.generate(prompt="a heron", quality="low", extra_headers=headers)
    again = client.images.with_raw_response.generate(prompt="a heron", quality="low", extra_headers=headers)
    assert again.headers["x-imagegate-idempotent-replay"] == "true"
    assert first.parse().data == again.parse().data
    with pytest.raises(openai.ConflictError):
        client.images.generate(prompt="another heron", quality="low", extra_headers=headers)


def test_per_key_rpm_is_a_rate_limit_error_with_retry_after(gateway: tuple[str, str, str]) -> None:
    url, _, mini = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=mini, max_retries=0)
    client.images.generate(model="gpt-image-1-mini", prompt="one", quality="low")
    client.images.generate(model="gpt-image-1-mini", prompt="two", quality="low")
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(model="gpt-image-1-mini", prompt="three", quality="low")
    retry_after = float(limited.value.response.headers["retry-after"])
    assert 0 < retry_after <= 60


def test_sqlite_stores_and_admin_api(tmp_path: Path) -> None:
    admin = "e2e-admin-key"
    settings = ServerSettings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'imagegate.db'}",
        admin_key=admin,
        url_secret=b"another-16-byte-secret",
    )
    with serve_in_thread(create_app(settings=settings)) as url:
        anonymous = openai.OpenAI(base_url=f"{url}/v1", api_key="nobody", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.images.generate(prompt="x", quality="low")
        created = httpx.post(
            f"{url}/admin/keys", json={"name": "team"}, headers={"authorization": f"Bearer {admin}"}
        )
        assert created.status_code == 201, created.text
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=created.json()["key"], max_retries=0)
        assert client.images.generate(prompt="a fox", quality="low").data
    assert (tmp_path / "imagegate.db").stat().st_size > 0


def test_readyz_checks_stores_and_image_directory(gateway: tuple[str, str, str]) -> None:
    url, _, _ = gateway
    r = httpx.get(f"{url}/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == ["images", "stores"]


def test_streaming_edit_partial_images(gateway: tuple[str, str, str]) -> None:
    url, key, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    stream = client.images.edit(
        model="gpt-image-1",
        image=("a.png", _png_bytes(), "image/png"),
        prompt="add a moon",
        quality="low",
        stream=True,
        partial_images=1,
    )
    types = [event.type for event in stream]
    assert types == ["image_edit.partial_image", "image_edit.completed"]


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[str, Callable[[str, list[dict[str, object]]], None]]]:
    """A gateway (open mode) over an emulator app whose faults a test scripts: (base URL,
    ``set_faults(deployment, rules)``). Emulator latency off, small images."""
    defaults = default_emulator_config()
    deployments = tuple(d.model_copy(update={"image_bytes": "small"}) for d in defaults.deployments)
    emulator = create_emulator_app(defaults.model_copy(update={"deployments": deployments}), time_scale=0.0)
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator))
    settings = ServerSettings(data_dir=tmp_path, url_secret=b"e2e-secret-of-16-bytes", probe_tick_s=0)
    app = create_app(load(None, {}), http_client=upstream, settings=settings, open_access=True)

    def set_faults(deployment: str, rules: list[dict[str, object]]) -> None:
        async def put() -> None:
            transport = httpx.ASGITransport(app=emulator)
            async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as admin:
                r = await admin.put(f"/_emulator/deployments/{deployment}/faults", json=rules)
                assert r.status_code == 200, r.text

        asyncio.run(put())

    with serve_in_thread(app) as url:
        yield url, set_faults


def _requests_seen(url: str, route: str) -> float:
    """How many requests the gateway answered on ``route`` (its own Prometheus counter)."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("imagegate_requests_total{") and f'route="{route}"' in line
    )


def test_sdk_retries_are_not_stacked_on_the_gateways_upstream_retries(
    faulty: tuple[str, Callable[[str, list[dict[str, object]]], None]],
) -> None:
    """Upstream answers 429 to everything: the gateway spends its own attempts, then answers 429
    with x-should-retry: false, and the SDK (default max_retries=2) raises at once instead of
    sending the request twice more (each of which would spend the gateway's attempts again)."""
    url, set_faults = faulty
    set_faults("gpt-image-1-mini", [{"kind": "status", "status": 429, "retry_after_s": 0}])
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="any")  # the SDK's default retries
    with pytest.raises(openai.RateLimitError) as limited:
        client.images.generate(model="gpt-image-1-mini", prompt="a fox", quality="low")
    headers = limited.value.response.headers
    assert headers["x-should-retry"] == "false"
    assert int(headers["x-imagegate-attempts"]) > 1  # the gateway did retry upstream
    assert _requests_seen(url, "/v1/images/generations") == 1


def test_translation_and_bad_numbers_through_the_sdk(gateway: tuple[str, str, str]) -> None:
    """`x-imagegate-translate: true` maps DALL-E 3 values for the model served (it was refused by
    the budget estimate before the pipeline could translate); an absurd `n` is a 400 naming it
    (it was a 500 for n=-1, a 429 "budget exceeded" for n=2**40)."""
    url, key, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    raw = client.images.with_raw_response.generate(
        model="gpt-image-1", prompt="a fox", quality="hd", extra_headers={"x-imagegate-translate": "true"}
    )
    assert raw.headers["x-imagegate-translated"] == "quality"
    assert raw.parse().quality == "high"  # what was made; the header says it was changed
    for n in (-1, 0, 2**40):
        with pytest.raises(openai.BadRequestError) as bad:
            client.images.generate(model="gpt-image-1", prompt="a fox", n=n)
        assert bad.value.param == "n", n


def test_azure_client_unknown_deployment_is_not_found(gateway: tuple[str, str, str]) -> None:
    """Azure answers a deployment path that names nothing with 404 `DeploymentNotFound` (after
    checking the key): `AzureOpenAI` callers get `NotFoundError`, as from Azure. (The OpenAI
    route keeps OpenAI's answer to an unknown image model: a 400 naming `model`.)"""
    url, key, _ = gateway
    client = openai.AzureOpenAI(azure_endpoint=url, api_version=API_VERSION, api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(model="no-such-deployment", prompt="a fox")
    assert missing.value.code == "DeploymentNotFound"
    assert "no-such-deployment" in missing.value.message and "gpt-image-1" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.images.edit(model="no-such-deployment", image=("a.png", _png_bytes(64, 64)), prompt="x")
    with pytest.raises(openai.BadRequestError) as no_edits:  # a served model that cannot edit: 400
        client.images.edit(model="dall-e-3", image=("a.png", _png_bytes(64, 64)), prompt="x")
    assert no_edits.value.param == "model"
    anonymous = openai.AzureOpenAI(
        azure_endpoint=url, api_version=API_VERSION, api_key="ig-wrong-key-123456789012345", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):  # the key first, as Azure does
        anonymous.images.generate(model="no-such-deployment", prompt="a fox")


def test_models_through_both_clients(gateway: tuple[str, str, str]) -> None:
    """`client.models.list()/retrieve()`: `OpenAI` reads /v1/models, `AzureOpenAI` /openai/models."""
    url, key, _ = gateway
    for client in (
        openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0),
        openai.AzureOpenAI(azure_endpoint=url, api_version=API_VERSION, api_key=key, max_retries=0),
    ):
        ids = [m.id for m in client.models.list()]
        assert ids[:2] == ["default", "gpt-image-1"] and "dall-e-3" in ids
        assert client.models.retrieve("gpt-image-1-mini").id == "gpt-image-1-mini"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("no-such-model")


def test_models_need_a_key_and_show_what_it_may_use(
    gateway: tuple[str, str, str], faulty: tuple[str, Callable[[str, list[dict[str, object]]], None]]
) -> None:
    """As OpenAI's `models.list()`: a gateway that checks keys answers it only with a valid key
    (the image routes' 401), and lists what that key may use; in open mode anyone may list."""
    url, _, mini = gateway
    for path in ("/v1/models", "/openai/models?api-version=" + API_VERSION, "/v1/models/gpt-image-1"):
        assert httpx.get(f"{url}{path}").status_code == 401
    wrong = "ig-wrong-key-123456789012345"
    for client in (
        openai.OpenAI(base_url=f"{url}/v1", api_key=wrong, max_retries=0),
        openai.AzureOpenAI(azure_endpoint=url, api_version=API_VERSION, api_key=wrong, max_retries=0),
    ):
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        with pytest.raises(openai.AuthenticationError):
            client.models.retrieve("gpt-image-1")
    for client in (
        openai.OpenAI(base_url=f"{url}/v1", api_key=mini, max_retries=0),
        openai.AzureOpenAI(azure_endpoint=url, api_version=API_VERSION, azure_ad_token=mini, max_retries=0),
    ):
        assert [m.id for m in client.models.list()] == ["gpt-image-1-mini"]
        assert client.models.retrieve("gpt-image-1-mini").id == "gpt-image-1-mini"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-image-1")
    open_url, _ = faulty
    anyone = openai.AzureOpenAI(
        azure_endpoint=open_url, api_version=API_VERSION, api_key="any", max_retries=0
    )
    assert "gpt-image-1" in [m.id for m in anyone.models.list()]
    assert httpx.get(f"{open_url}/v1/models").status_code == 200


def test_an_sdk_timeout_does_not_become_stacked_retries(
    faulty: tuple[str, Callable[[str, list[dict[str, object]]], None]],
) -> None:
    """An upstream that hangs and an SDK with a 3 s timeout: the gateway's deadline ends before the
    SDK's timeout (it announces it as `x-stainless-read-timeout`), with a 504 the SDK does not
    retry. Before, the SDK timed out and sent the request twice more while the gateway went on
    with each one (3 gateway requests, 5 upstream attempts, for one `images.generate`)."""
    url, set_faults = faulty
    set_faults("gpt-image-1-mini", [{"kind": "hang", "phase": "after", "delay_s": 8}])
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="any", timeout=3)  # the SDK's default retries
    with pytest.raises(openai.InternalServerError) as late:
        client.images.generate(model="gpt-image-1-mini", prompt="a fox", quality="low")
    assert late.value.status_code == 504 and late.value.code == "deadline_exceeded"
    assert "x-imagegate-degrade: true" in late.value.message  # how to get a lower quality in time
    assert late.value.response.headers["x-should-retry"] == "false"
    assert _requests_seen(url, "/v1/images/generations") == 1


@pytest.mark.parametrize("operation", ["generate", "edit"])
def test_an_upstream_error_mid_stream_is_an_sse_error_the_sdk_raises(
    faulty: tuple[str, Callable[[str, list[dict[str, object]]], None]], operation: str
) -> None:
    url, set_faults = faulty
    set_faults("gpt-image-1-mini", [{"kind": "stream_error"}])  # after the first partial image
    client = openai.AzureOpenAI(azure_endpoint=url, api_version=API_VERSION, api_key="any", max_retries=0)
    common = {"model": "gpt-image-1-mini", "prompt": "a fox", "quality": "low", "partial_images": 2}
    if operation == "edit":
        stream = client.images.edit(image=("a.png", _png_bytes(64, 64)), stream=True, **common)
    else:
        stream = client.images.generate(stream=True, **common)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        for event in stream:
            seen.append(event.type)
    prefix = "image_edit" if operation == "edit" else "image_generation"
    assert seen == [f"{prefix}.partial_image"]
    body = failed.value.body
    assert isinstance(body, dict) and {"message", "type", "param", "code"} <= set(body)
    assert body["code"] == "upstream_failed" and body["deployment"] == "gpt-image-1-mini"

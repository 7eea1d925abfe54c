"""schemathesis over the served OpenAPI document: no 5xx, every error in OpenAI's shape.

The app under test is the real gateway (``create_app``: parsing, governance with a key store,
the library's validation and pipeline) over the in-process emulator with small images; image
routes are called with a virtual key, admin routes with the admin key. Bounded and deterministic
(``derandomize``): at most 50 generated examples per operation, so a failure reproduces and the
run stays within seconds.

Random strings almost never name a model, so half of the generated ``model`` values (in a path
or a body) are replaced by a model the gateway serves: otherwise the Azure deployment routes
would only ever meet "unknown model" and never reach the upstream.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import default_emulator_config
from imagegate.ports import KeyScope
from imagegate.server.app import create_app
from imagegate.server.settings import ServerSettings
from imagegate.stores.memory import MemoryKeyStore

ADMIN_KEY = "fuzz-admin"
KEYS = MemoryKeyStore()
CLIENT_KEY = asyncio.run(KEYS.create("fuzz-client", KeyScope(), datetime.now(UTC))).plaintext
SERVED = ("default", "gpt-image-1", "gpt-image-1-mini", "gpt-image-2", "dall-e-3")


def _app() -> Any:
    defaults = default_emulator_config()
    deployments = tuple(
        d.model_copy(update={"rpm": 10**7, "concurrency": 64, "image_bytes": "small"})
        for d in defaults.deployments
    )
    emulator = create_emulator_app(defaults.model_copy(update={"deployments": deployments}), time_scale=0.0)
    config = load(None, {})  # zero config: the emulated deployments
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator))
    app = create_app(
        config,
        http_client=client,
        settings=ServerSettings(
            admin_key=ADMIN_KEY,
            url_secret=b"fuzz-secret-16-bytes",
            data_dir=Path(tempfile.mkdtemp()),
            probe_tick_s=0,
        ),
        keys=KEYS,
        open_access=False,
    )
    return app


STATUSES: dict[tuple[str, str, int], int] = {}
schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


def _served_or_as_is(values: dict[str, Any], name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just(values), st.sampled_from(SERVED).map(lambda model: {**values, name: model}))


@schema.hook
def flatmap_path_parameters(
    context: Any, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    for name in ("model", "model_id"):
        if path_parameters and name in path_parameters:
            return _served_or_as_is(path_parameters, name)
    return st.just(path_parameters)


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    if isinstance(body, dict) and "model" in body and "prompt" in body:
        return _served_or_as_is(body, "model")
    return st.just(body)


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_5xx_and_errors_are_openai_shaped(case: schemathesis.Case) -> None:
    # the admin routes are fuzzed as the admin, the others with a virtual key (else all is 401)
    key = ADMIN_KEY if case.path.startswith("/admin") else CLIENT_KEY
    response = case.call(headers={"authorization": f"Bearer {key}"})
    seen = (case.method, case.path, response.status_code)
    STATUSES[seen] = STATUSES.get(seen, 0) + 1
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and isinstance(error["code"], str)
        assert "param" in error


def test_the_fuzz_reached_the_upstream() -> None:
    """Guard against a fuzz that only ever meets validation or authorization: every image route
    (both shapes, generations and edits) must have answered 200 at least once, and the admin
    and model routes must have done what they are for."""
    if not STATUSES:
        pytest.skip("the fuzz test did not run in this session")
    succeeded = {(method, path) for (method, path, status), n in STATUSES.items() if status < 300 and n}
    wanted = {
        ("POST", f"{prefix}/images/{operation}")
        for prefix in ("/v1", "/openai/v1", "/openai/deployments/{model}")
        for operation in ("generations", "edits")
    }
    wanted |= {("POST", "/admin/keys"), ("GET", "/admin/keys"), ("GET", "/v1/models/{model_id}")}
    assert wanted <= succeeded, sorted(wanted - succeeded)

"""schemathesis over the served OpenAPI document: no 5xx, every error in OpenAI's shape.

The app under test is the real gateway (``create_app``: parsing, governance, the library's
validation and pipeline) over the in-process emulator with small images, in open mode, with an
admin key. Bounded and deterministic (``derandomize``): at most 50 generated examples per
operation, so a failure reproduces and the run stays within seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import default_emulator_config
from imagegate.server.app import create_app
from imagegate.server.settings import ServerSettings


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
            admin_key="fuzz-admin", url_secret=b"fuzz-secret-16-bytes", data_dir=Path(tempfile.mkdtemp())
        ),
        open_access=True,
    )
    return app


STATUSES: dict[tuple[str, int], int] = {}
schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_5xx_and_errors_are_openai_shaped(case: schemathesis.Case) -> None:
    # the admin routes are fuzzed as the admin (else everything there is a 401)
    headers = {"authorization": "Bearer fuzz-admin"} if case.path.startswith("/admin") else None
    response = case.call(headers=headers)
    STATUSES[case.path, response.status_code] = STATUSES.get((case.path, response.status_code), 0) + 1
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and isinstance(error["code"], str)
        assert "param" in error


def test_the_fuzz_reached_the_upstream() -> None:
    """Guard against a fuzz that only ever meets validation: some generations must succeed."""
    if not STATUSES:
        pytest.skip("the fuzz test did not run in this session")
    ok = sum(n for (path, status), n in STATUSES.items() if status == 200 and path.endswith("/generations"))
    assert ok > 0, STATUSES

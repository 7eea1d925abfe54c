"""schemathesis over the served OpenAPI document: no 5xx, every error in OpenAI's shape.

Bounded and deterministic (``derandomize``): at most 50 examples per operation, so the whole
run stays within a few seconds and a failure reproduces.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from imagegate.server.app import build_app
from imagegate.server.governance import Governance
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.service import ImageService
from imagegate.server.state import GatewayState, ModelEntry
from imagegate.server.urls import UrlSigner

from .fakes import FakeBackend, FakeBlobs


def _app() -> Any:
    metrics = GatewayMetrics()
    svc = ImageService(
        backend=FakeBackend(),
        governance=Governance(),
        metrics=metrics,
        signer=UrlSigner(secret=b"fuzz"),
        blobs=FakeBlobs(),
    )
    state = GatewayState(
        metrics=metrics, images=svc, admin_key="fuzz-admin", models=lambda: (ModelEntry("m"),)
    )
    return build_app(state)


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
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and isinstance(error["code"], str)
        assert "param" in error

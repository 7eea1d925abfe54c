"""What the routes of one app share, hung on ``app.state.gateway`` by the composition root.

Routes reach their collaborators through ``gateway_state(request)`` rather than module globals,
so many apps (tests, several configs) live side by side in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from imagegate.server.failure_log import FailureLog
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.settings import DEFAULT_LIMITS, ServerLimits

if TYPE_CHECKING:
    from imagegate.server.deployments import StatusSource
    from imagegate.server.service import ImageService

__all__ = ["GatewayState", "ModelEntry", "ReadinessCheck", "gateway_state"]

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns ``None`` when ready, else a short reason (no secrets) shown by ``/readyz``."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One row of ``GET /v1/models``: a logical model the gateway serves."""

    id: str
    owned_by: str = "imagegate"


@dataclass(kw_only=True)
class GatewayState:
    limits: ServerLimits = DEFAULT_LIMITS
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    models: Callable[[], Sequence[ModelEntry]] = lambda: ()
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    created_unix: int = 0
    images: ImageService | None = None
    admin_key: str | None = field(default=None, repr=False)
    deployment_status: StatusSource | None = None  # routing's view per deployment (admin, metrics)
    scrape_failures: FailureLog = field(
        default_factory=lambda: FailureLog(
            logging.getLogger("imagegate.server"), "reading routing state for /metrics (deployment gauges)"
        )
    )


def gateway_state(request: Request) -> GatewayState:
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state

"""Composition root of the HTTP gateway.

``build_app`` assembles a FastAPI app from already-built collaborators (a ``GatewayState``);
``create_app`` (below, once the library pieces exist) builds those from configuration. The
middleware order is declared in exactly one list, outermost first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import Scope

from imagegate import __version__
from imagegate.config import ImageGateConfig
from imagegate.server.errors import install_error_handlers
from imagegate.server.middleware import (
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    ErrorMiddleware,
    RequestIdMiddleware,
)
from imagegate.server.routes import admin, files, images, ops
from imagegate.server.settings import ServerLimits
from imagegate.server.state import GatewayState, ModelEntry

__all__ = ["build_app", "models_of"]


def _body_limit(limits: ServerLimits) -> Callable[[Scope], int]:
    def limit_for(scope: Scope) -> int:
        for key, value in scope.get("headers", []):
            if key == b"content-type":
                if bytes(value).lower().startswith(b"multipart/"):
                    return limits.max_multipart_bytes
                break
        return limits.max_json_body_bytes

    return limit_for


def build_app(state: GatewayState) -> FastAPI:
    """A gateway app over ``state``; every app has its own metrics registry."""
    if not state.created_unix:
        state.created_unix = int(time.time())
    m = state.metrics

    def observe(route: str, method: str, status: int, duration_s: float) -> None:
        m.observe_request(route=route, method=method, status=status, duration_s=duration_s)

    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(AccessLogMiddleware, observe=observe),
        Middleware(ErrorMiddleware),
        Middleware(BodySizeLimitMiddleware, limit_for=_body_limit(state.limits)),
    ]
    app = FastAPI(
        title="imagegate",
        version=__version__,
        summary="An OpenAI- and Azure-compatible gateway for image generation.",
        middleware=middleware,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.gateway = state
    install_error_handlers(app)
    app.include_router(ops.router)
    app.include_router(images.router)
    app.include_router(files.router)
    app.include_router(admin.router)
    return app


def models_of(config: ImageGateConfig) -> tuple[ModelEntry, ...]:
    """Every name a client may pass as ``model``: logical groups first, then deployment names,
    then the catalog models the deployments serve (``ImageGateConfig.deployments_for`` order)."""
    names: dict[str, None] = dict.fromkeys(config.models)
    names.update(dict.fromkeys(d.name for d in config.deployments))
    names.update(dict.fromkeys(d.model for d in config.deployments))
    return tuple(ModelEntry(n) for n in names)

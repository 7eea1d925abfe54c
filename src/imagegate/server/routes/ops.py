"""Operational routes: liveness, readiness, the model list (``/v1/models`` for ``OpenAI`` clients,
``/openai/models`` for ``AzureOpenAI`` ones) and Prometheus metrics.

The model list is not public when the gateway checks keys (as OpenAI's is not): it needs a valid
virtual key, as the image routes do, and lists only the models that key may use (every one for a
key not limited to models). In open mode anyone may read it."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from imagegate.errors import NotFound, StorageError
from imagegate.server.deployments import refresh_gauges
from imagegate.server.governance import credential_from
from imagegate.server.metrics import CONTENT_TYPE_LATEST
from imagegate.server.middleware import request_state
from imagegate.server.state import ModelEntry, gateway_state

__all__ = ["router"]

router = APIRouter()


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


@router.get("/healthz", tags=["ops"], summary="Liveness: the process answers.")
async def healthz() -> Response:
    return _json({"status": "ok"})


@router.get(
    "/readyz",
    tags=["ops"],
    summary="Readiness: stores and upstream wiring are usable.",
    responses={503: {"description": "Not ready; the body names what is not."}},
)
async def readyz(request: Request) -> Response:
    state = gateway_state(request)
    problems: dict[str, str] = {}
    for name, check in state.readiness.items():
        try:
            reason = await check()
        except Exception as exc:  # a failing check means "not ready", never a 500
            reason = type(exc).__name__
        if reason is not None:
            problems[name] = reason
    if problems:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(problems.items()))
        raise StorageError(f"not ready: {detail}")
    return _json({"status": "ready", "checks": sorted(state.readiness)})


_MODEL_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing or unknown API key (when the gateway checks keys)."}
}


async def _visible_models(request: Request) -> Sequence[ModelEntry]:
    """The models the caller's key may use (401 without a valid key when keys are checked)."""
    state = gateway_state(request)
    if state.images is None:
        return state.models()
    record = await state.images.governance.key_of(credential_from(request.headers))
    if record is None:  # open mode
        return state.models()
    request_state(request.scope)["key_id"] = record.id
    allowed = record.scope.models
    return [m for m in state.models() if not allowed or m.id in allowed]


@router.get(
    "/v1/models",
    tags=["models"],
    summary="The logical image models this gateway serves that the key may use.",
    responses=_MODEL_ERRORS,
)
@router.get(
    "/openai/models",
    tags=["models"],
    summary="The same list where AzureOpenAI clients read it (?api-version=...).",
    responses=_MODEL_ERRORS,
)
async def list_models(request: Request) -> Response:
    models = await _visible_models(request)
    state = gateway_state(request)
    data = [
        {"id": m.id, "object": "model", "created": state.created_unix, "owned_by": m.owned_by} for m in models
    ]
    return _json({"object": "list", "data": data})


@router.get("/metrics", tags=["ops"], summary="Prometheus metrics of this gateway.")
async def metrics(request: Request) -> Response:
    state = gateway_state(request)
    if state.deployment_status is not None:
        # per-deployment gauges are read from routing now, at scrape time (no polling task)
        try:
            refresh_gauges(state.metrics, await state.deployment_status())
            state.scrape_failures.succeeded()
        except Exception as exc:  # a scrape still shows the counters when routing state is unreadable
            state.scrape_failures.failed(exc)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models/{model_id}",
    tags=["models"],
    summary="One logical model, if served and the key may use it.",
    responses={**_MODEL_ERRORS, 404: {"description": "Not served, or not to this key."}},
)
@router.get(
    "/openai/models/{model_id}",
    tags=["models"],
    summary="The same, for AzureOpenAI clients.",
    responses={**_MODEL_ERRORS, 404: {"description": "Not served, or not to this key."}},
)
async def retrieve_model(request: Request, model_id: str) -> Response:
    models = await _visible_models(request)
    state = gateway_state(request)
    for m in models:
        if m.id == model_id:
            return _json(
                {"id": m.id, "object": "model", "created": state.created_unix, "owned_by": m.owned_by}
            )
    raise NotFound(f"model {model_id!r} is not served by this gateway (or not to this key)")

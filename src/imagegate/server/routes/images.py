"""Image routes in both shapes the official SDKs speak.

====================================================================  ==========================
route                                                                 client
====================================================================  ==========================
``POST /v1/images/generations`` (JSON), ``/v1/images/edits`` (multipart)   ``OpenAI(base_url=.../v1)``
``POST /openai/v1/images/generations|edits``                          Azure "v1" API shape
``POST /openai/deployments/{model}/images/generations|edits``         ``AzureOpenAI(azure_endpoint=...)``
====================================================================  ==========================

On the Azure deployment routes the path names the *logical model* (a group, deployment or
catalog model of this gateway), and ``api-version`` must be present (any value: the gateway
speaks one protocol to clients and picks each upstream's version itself). A path naming none is
Azure's 404 ``DeploymentNotFound``; the OpenAI routes answer an unknown ``model`` as OpenAI does,
with a 400 naming it.

Bodies are read and parsed by hand (``server.parsing``) rather than by FastAPI's body params:
one orjson parse, multipart limits we choose, errors in the OpenAI shape. The OpenAPI document
still describes them (``openapi_extra``), so clients and the schemathesis fuzz see real schemas.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from imagegate.errors import InvalidRequest, NotFound
from imagegate.server.middleware import request_state
from imagegate.server.parsing import ParsedCall, parse_edit, parse_generation
from imagegate.server.state import gateway_state

__all__ = ["router"]

router = APIRouter(tags=["images"])

_STR = {"type": "string"}
_COMMON_PROPS: dict[str, Any] = {
    "prompt": {"type": "string", "minLength": 1, "maxLength": 32000},
    "model": {"type": "string", "description": "a logical model, deployment or catalog model name"},
    "n": {"type": "integer", "minimum": 1, "maximum": 10},
    "size": {"type": "string", "examples": ["1024x1024", "1536x1024", "1024x1536", "auto"]},
    "quality": {"type": "string", "examples": ["low", "medium", "high", "auto", "standard", "hd"]},
    "response_format": {"type": "string", "enum": ["url", "b64_json"]},
    "output_format": {"type": "string", "enum": ["png", "jpeg", "webp"]},
    "output_compression": {"type": "integer", "minimum": 0, "maximum": 100},
    "background": {"type": "string", "enum": ["transparent", "opaque", "auto"]},
    "stream": {"type": "boolean"},
    "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
    "user": _STR,
}
_GENERATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "additionalProperties": False,
    "properties": {
        **_COMMON_PROPS,
        "moderation": {"type": "string", "enum": ["low", "auto"]},
        "style": {"type": "string", "enum": ["vivid", "natural"]},
    },
}
_FILE = {"type": "string", "format": "binary"}
_EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt", "image"],
    "properties": {
        **_COMMON_PROPS,
        "image": _FILE,
        "image[]": {"type": "array", "items": _FILE, "maxItems": 16},
        "mask": _FILE,
        "input_fidelity": {"type": "string", "enum": ["low", "high"]},
    },
}
_IMAGES_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["created", "data"],
    "properties": {
        "created": {"type": "integer"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"b64_json": _STR, "url": _STR, "revised_prompt": _STR},
            },
        },
        "usage": {"type": "object"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": _STR,
                "type": _STR,
                "code": _STR,
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
    for status, text in (
        (400, "Invalid request: the error names the field, the value and what is allowed."),
        (401, "Missing or unknown API key."),
        (403, "The key may not make this request."),
        (404, "Unknown deployment (Azure deployment routes: `DeploymentNotFound`)."),
        (409, "Idempotency-Key reused with another body."),
        (410, "The stored answer to this Idempotency-Key is gone; use a new key to run again."),
        (413, "Body or file too large."),
        (429, "Rate limit or budget exhausted (see retry-after)."),
        (502, "Upstream failed after the gateway's own retries."),
        (
            503,
            "No deployment available (`retry-after` when known); storage down; or the gateway was "
            "shutting down (`shutting_down`, `x-should-retry: false`: the image may have been billed).",
        ),
        (504, "Upstream timed out."),
    )
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The images (JSON), or partial-image events when stream=true.",
        "content": {"application/json": {"schema": _IMAGES_RESPONSE}, "text/event-stream": {"schema": _STR}},
    },
    **_ERRORS,
}


def _extra(schema: dict[str, Any], content_type: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {content_type: {"schema": schema}}}}


async def _generation(request: Request, model: str | None) -> Response:
    state = gateway_state(request)
    service = state.images
    if service is None:
        raise InvalidRequest("this gateway serves no image backend", field="model")
    call = parse_generation(await request.body(), model=model)
    scope_state = request_state(request.scope)
    return await service.handle(
        call,
        headers=request.headers,
        request_id=scope_state["request_id"],
        origin=_origin(request, call),
        state=scope_state,
    )


async def _edit(request: Request, model: str | None) -> Response:
    state = gateway_state(request)
    service = state.images
    if service is None:
        raise InvalidRequest("this gateway serves no image backend", field="model")
    call = await parse_edit(request, state.limits, model=model)
    scope_state = request_state(request.scope)
    return await service.handle(
        call,
        headers=request.headers,
        request_id=scope_state["request_id"],
        origin=_origin(request, call),
        state=scope_state,
    )


def _origin(request: Request, call: ParsedCall) -> str:
    """Where image URLs point (this gateway as the client reached it), for ``response_format=url``
    only: Starlette builds ``request.url`` from the scope on each access (~1 % of a request)."""
    if call.response_format != "url":
        return ""
    return f"{request.url.scheme}://{request.url.netloc}"


@router.post(
    "/v1/images/generations",
    summary="Create images from a prompt (OpenAI shape).",
    openapi_extra=_extra(_GENERATION_SCHEMA, "application/json"),
    responses=_RESPONSES,
)
async def create_image(request: Request) -> Response:
    return await _generation(request, None)


@router.post(
    "/v1/images/edits",
    summary="Edit images with a prompt and optional mask (OpenAI shape, multipart).",
    openapi_extra=_extra(_EDIT_SCHEMA, "multipart/form-data"),
    responses=_RESPONSES,
)
async def edit_image(request: Request) -> Response:
    return await _edit(request, None)


@router.post(
    "/openai/v1/images/generations",
    summary="Create images (Azure v1 API shape: the model names a logical model).",
    openapi_extra=_extra(_GENERATION_SCHEMA, "application/json"),
    responses=_RESPONSES,
)
async def azure_v1_create_image(request: Request) -> Response:
    return await _generation(request, None)


@router.post(
    "/openai/v1/images/edits",
    summary="Edit images (Azure v1 API shape, multipart).",
    openapi_extra=_extra(_EDIT_SCHEMA, "multipart/form-data"),
    responses=_RESPONSES,
)
async def azure_v1_edit_image(request: Request) -> Response:
    return await _edit(request, None)


_API_VERSION = Query(alias="api-version", min_length=1, description="required by Azure clients; any value")


class DeploymentNotFound(NotFound):
    """Azure's 404 for a deployment path that names nothing, which ``AzureOpenAI`` callers get
    as ``NotFoundError`` (``code`` as Azure spells it)."""

    code = "DeploymentNotFound"


async def _deployment(
    handler: Callable[[Request, str | None], Awaitable[Response]], request: Request, model: str
) -> Response:
    """An Azure deployment route: a path naming no model of this gateway is a 404, found where
    the request resolves its model (after the key is checked, as Azure checks it first)."""
    try:
        return await handler(request, model)
    except InvalidRequest as exc:
        served = [m.id for m in gateway_state(request).models()]
        if exc.field == "model" and model not in served:
            raise DeploymentNotFound(
                f"The API deployment {model!r} does not exist on this gateway; "
                f"its deployments (logical models) are: {', '.join(served)}"
            ) from None
        raise


@router.post(
    "/openai/deployments/{model}/images/generations",
    summary="Create images (Azure deployment shape: the path names a logical model).",
    openapi_extra=_extra(_GENERATION_SCHEMA, "application/json"),
    responses=_RESPONSES,
)
async def azure_create_image(request: Request, model: str, api_version: str = _API_VERSION) -> Response:
    return await _deployment(_generation, request, model)


@router.post(
    "/openai/deployments/{model}/images/edits",
    summary="Edit images (Azure deployment shape, multipart).",
    openapi_extra=_extra(_EDIT_SCHEMA, "multipart/form-data"),
    responses=_RESPONSES,
)
async def azure_edit_image(request: Request, model: str, api_version: str = _API_VERSION) -> Response:
    return await _deployment(_edit, request, model)

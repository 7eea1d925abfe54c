"""The only place where errors become HTTP responses.

Every failure leaves the gateway in the OpenAI error shape, so the official ``openai`` SDK (and
anything written against OpenAI or Azure) parses it unchanged::

    {"error": {"message": "...", "type": "...", "param": null, "code": "...", ...details}}

Headers, decided here and nowhere else:

* ``retry-after`` and ``retry-after-ms`` on 429/503 when the error knows when capacity returns.
* ``connection: close`` on a 408 (the body stopped arriving: what is left of it must not be
  read as the next request on the connection).
* ``x-should-retry: false`` when a retry by the caller cannot help or could double-bill: every
  client error except a per-key rate limit, every upstream failure, and any error met after
  upstream attempts, such as a 429 or "no deployment" once routing gave up (the gateway's own
  upstream client already spent its attempts, so the SDK's two retries would multiply them),
  storage errors and unexpected 500s (the image may already have been generated and billed).
* ``x-imagegate-attempts`` on an error met after upstream attempts: how many were made.
* ``x-request-id`` is added by the request-id middleware, not here; the body of a 500 names it.

Validation errors from FastAPI/pydantic are rendered in the same shape with the field named in
``param`` (never FastAPI's default 422 ``{"detail": [...]}``), and an unexpected exception becomes a
500 whose body carries a request id and nothing else from the exception: no traceback, no message
(which could hold anything), no secret.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from imagegate.errors import (
    BudgetExceeded,
    ClientError,
    ContentFiltered,
    ImageGateError,
    InvalidRequest,
    NoDeploymentAvailable,
    RateLimited,
    RequestTimeout,
    UpstreamError,
    UpstreamStatusError,
)

__all__ = [
    "error_response",
    "install_error_handlers",
    "internal_error_response",
    "render_error",
    "validation_error_response",
]

log = logging.getLogger("imagegate.server")

_HTTP_CODES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request", "invalid_request_error"),
    401: ("invalid_api_key", "authentication_error"),
    403: ("permission_denied", "permission_error"),
    404: ("not_found", "invalid_request_error"),
    405: ("method_not_allowed", "invalid_request_error"),
    406: ("not_acceptable", "invalid_request_error"),
    408: ("request_timeout", "invalid_request_error"),
    409: ("conflict", "invalid_request_error"),
    413: ("payload_too_large", "invalid_request_error"),
    415: ("unsupported_media_type", "invalid_request_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
}


def error_response(
    status: int,
    *,
    message: str,
    type: str,
    code: str,
    param: str | None = None,
    details: Mapping[str, Any] | None = None,
    retry_after_s: float | None = None,
    should_retry: bool | None = None,
) -> Response:
    """Build one OpenAI-shaped error response. All other helpers end here."""
    error: dict[str, Any] = {"message": message, "type": type, "param": param, "code": code}
    if details:
        error.update(details)
    headers: dict[str, str] = {}
    if retry_after_s is not None and retry_after_s >= 0 and math.isfinite(retry_after_s):
        headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))
        headers["retry-after-ms"] = str(round(retry_after_s * 1000))
    if should_retry is not None:
        headers["x-should-retry"] = "true" if should_retry else "false"
    return Response(
        content=orjson.dumps({"error": error}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _retry_after(exc: ImageGateError) -> float | None:
    if isinstance(exc, RateLimited | BudgetExceeded | NoDeploymentAvailable):
        return exc.retry_after_s
    return None


def _should_retry(exc: ImageGateError, retry_after_s: float | None) -> bool | None:
    """``False`` where a caller's retry is useless or risky; ``None`` leaves the SDK's default.

    An error met after upstream attempts (``exc.attempts``: a 429 storm, every deployment gone)
    is never retried by the caller: the gateway already spent its retries and fail-over, and each
    of the SDK's two retries would spend them all again."""
    if exc.attempts:
        return False
    if isinstance(exc, RateLimited):
        return None  # a key's rpm, or no capacity before the deadline: waiting retry-after is right
    if isinstance(exc, NoDeploymentAvailable):
        return None if retry_after_s is not None else False
    return False


def render_error(exc: ImageGateError, *, request_id: str | None = None) -> Response:
    """Render any exception of the tree with its status, code, details and headers."""
    details = dict(exc.details())
    param = details.pop("param", None)
    if isinstance(exc, ContentFiltered) and exc.revised_prompt is not None:
        details["revised_prompt"] = exc.revised_prompt
    if isinstance(exc, UpstreamError) and exc.deployment is not None:
        details["deployment"] = exc.deployment
    if isinstance(exc, UpstreamStatusError):
        details["upstream_status"] = exc.status_code
        if exc.upstream_code is not None:
            details["upstream_code"] = exc.upstream_code
    status = exc.http_status
    if not isinstance(exc, ClientError) and status < 500:
        status = 500  # only client errors may be 4xx
    message = exc.message
    if status == 500:
        details["request_id"] = request_id
    retry_after_s = _retry_after(exc)
    response = error_response(
        status,
        message=message,
        type=exc.error_type,
        code=exc.code,
        param=param if isinstance(param, str) else None,
        details=details,
        retry_after_s=retry_after_s,
        should_retry=_should_retry(exc, retry_after_s),
    )
    if isinstance(exc, RequestTimeout):
        # the rest of a stalled body may still come: never read it as the next request
        response.headers["connection"] = "close"
    if exc.attempts:
        response.headers["x-imagegate-attempts"] = str(len(exc.attempts))
    return response


def _param_of(loc: Sequence[int | str]) -> str:
    """``("body", "image", 0)`` → ``image[0]``; the source (body/query/header/path) is dropped."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "header", "path", "cookie"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error_response(errors: Sequence[Mapping[str, Any]]) -> Response:
    """Pydantic/FastAPI errors → 400 in the OpenAI shape; the first bad field is ``param``.

    The offending *input* is never echoed: a header could hold a key.
    """
    items = [{"param": _param_of(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in errors]
    if not items:
        items = [{"param": "", "message": "invalid request"}]
    first = items[0]
    message = "; ".join(f"{i['param'] or 'request'}: {i['message']}" for i in items[:5])
    return error_response(
        400,
        message=message,
        type="invalid_request_error",
        code="invalid_request",
        param=first["param"] or None,
        details={"errors": items} if len(items) > 1 else None,
        should_retry=False,
    )


def internal_error_response(request_id: str | None) -> Response:
    """A 500 that tells the caller only the request id to quote."""
    return error_response(
        500,
        message=(
            "The gateway had an unexpected error while processing your request. "
            f"Quote request id {request_id} when reporting it."
        ),
        type="server_error",
        code="internal_error",
        details={"request_id": request_id},
        should_retry=False,
    )


def http_status_response(status: int, detail: str | None) -> Response:
    """Starlette's own HTTPExceptions (404 unknown route, 405 wrong method) in the same shape."""
    code, type_ = _HTTP_CODES.get(status, ("http_error", "invalid_request_error"))
    if status >= 500:
        code, type_ = "server_error", "server_error"
    return error_response(
        status,
        message=detail or "request failed",
        type=type_,
        code=code,
        should_retry=False if status < 500 or status == 501 else None,
    )


def request_id_of(request: Request) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else None


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ImageGateError)
    return render_error(exc, request_id=request_id_of(request))


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestValidationError | ValidationError):
        return validation_error_response(list(exc.errors()))
    return validation_error_response([])


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = http_status_response(exc.status_code, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; unexpected exceptions are caught by ``ErrorMiddleware`` instead."""
    app.add_exception_handler(ImageGateError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)


def as_invalid_request(exc: ValidationError) -> InvalidRequest:
    """A pydantic error met while parsing a body by hand, as the tree's ``InvalidRequest``."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid"}
    field = _param_of(tuple(first.get("loc", ())))
    return InvalidRequest(f"{field or 'request'}: {first.get('msg', 'invalid')}", field=field or None)

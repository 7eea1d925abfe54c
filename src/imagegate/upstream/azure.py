"""The wire protocol of Azure OpenAI (and the OpenAI platform) image endpoints.

Three things live here, all free of I/O so they can be tested with plain values:

* ``wire_request``: URL, query, headers and body for one deployment and request. Azure's
  deployment route ``/openai/deployments/{d}/images/{op}?api-version=...``, Azure's v1 route
  ``/openai/v1/images/{op}`` (deployment name in ``model``), and the OpenAI platform
  ``/v1/images/{op}``. Generations are JSON; edits are multipart (``image`` or repeated
  ``image[]`` parts, and ``mask``), as the openai SDK sends them.
* ``classify``: the ONE function that turns every upstream outcome (a response, or an httpx
  exception) into either a parsed success or an error of the ``errors`` tree. It decides by
  status and the body's ``code`` (never by message text, except to read a retry-after number as a
  last resort). Bodies are parsed once, with orjson, around the base64, which is kept as
  received: a view of the body, never a Python string (``upstream.image_body``).
* ``SSEDecoder``: server-sent events of partial-image streaming. Hand-written (about 30 lines)
  because httpx has no SSE parser and the event grammar we need is small.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, overload

import httpx
import orjson

from imagegate.catalog import ModelSpec
from imagegate.config import DeploymentConfig
from imagegate.errors import (
    ContentFiltered,
    ImageGateError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    UpstreamFailed,
    UpstreamNotSent,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from imagegate.types import EditRequest, GeneratedImage, ImageRequest, Usage
from imagegate.upstream.image_body import parse_images_body

__all__ = [
    "Payload",
    "SSEDecoder",
    "SSEEvent",
    "WireRequest",
    "classify",
    "parse_retry_after",
    "parse_usage",
    "plain_headers",
    "wire_request",
]

USER_AGENT: Final = "imagegate/0.1"
CONTENT_FILTER_CODES: Final = frozenset(
    {"content_policy_violation", "moderation_blocked", "contentFilter", "content_filter"}
)
_RETRY_IN_MESSAGE = re.compile(
    r"(?:retry after|try again in)\s+(\d+(?:\.\d+)?)\s*(?:second|s\b)", re.IGNORECASE
)
_SAFETY_VIOLATIONS = re.compile(r"safety_violations=\[([^\]]*)\]")
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)
_MESSAGE_MAX = 300


# ---------------------------------------------------------------------------------------------
# requests


@dataclass(frozen=True, slots=True)
class WireRequest:
    """Everything ``httpx.AsyncClient.build_request`` needs, minus auth headers."""

    url: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    content: bytes | None = field(default=None, repr=False)
    data: Mapping[str, str] | None = field(default=None, repr=False)
    files: list[tuple[str, tuple[str, bytes, str]]] | None = field(default=None, repr=False)


def _url(dep: DeploymentConfig, operation: str) -> tuple[str, dict[str, str], str | None]:
    """URL, query and the body ``model`` value (``None`` when the URL names the deployment)."""
    path = "generations" if operation == "generate" else "edits"
    if dep.kind == "openai":
        return f"{dep.endpoint}/v1/images/{path}", {}, dep.deployment or dep.model
    query = {"api-version": dep.api_version} if dep.api_version else {}
    if dep.route == "v1":
        return f"{dep.endpoint}/openai/v1/images/{path}", query, dep.upstream_name
    return f"{dep.endpoint}/openai/deployments/{dep.upstream_name}/images/{path}", query, None


def _body(req: ImageRequest, spec: ModelSpec, model: str | None, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": req.prompt, **req.params()}
    if model is not None:
        body["model"] = model
    if req.response_format is None and "url" in spec.response_formats and "b64_json" in spec.response_formats:
        body["response_format"] = "b64_json"  # we return bytes; a URL would need a second fetch
    if stream:
        body["stream"] = True
    return body


def wire_request(
    dep: DeploymentConfig, req: ImageRequest, spec: ModelSpec, *, stream: bool = False
) -> WireRequest:
    url, params, model = _url(dep, req.operation)
    headers = {"user-agent": USER_AGENT, "accept": "text/event-stream" if stream else "application/json"}
    body = _body(req, spec, model, stream)
    if not isinstance(req, EditRequest):
        headers["content-type"] = "application/json"
        return WireRequest(url, params, headers, content=orjson.dumps(body))
    data = {k: _form_value(v) for k, v in body.items()}
    part = "image[]" if len(req.images) > 1 else "image"
    files = [(part, (img.filename, img.data, img.content_type)) for img in req.images]
    if req.mask is not None:
        files.append(("mask", (req.mask.filename, req.mask.data, req.mask.content_type)))
    return WireRequest(url, params, headers, data=data, files=files)


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------
# responses


@dataclass(frozen=True, slots=True)
class Payload:
    """A successful response, parsed."""

    images: tuple[GeneratedImage, ...]
    usage: Usage | None
    created: int | None
    request_id: str | None
    region: str | None


def parse_usage(raw: object) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    details = raw.get("input_tokens_details") or {}
    out_details = raw.get("output_tokens_details") or {}

    def num(m: Mapping[str, Any], k: str) -> int:
        v = m.get(k) if isinstance(m, Mapping) else None
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    return Usage(
        input_tokens=num(raw, "input_tokens"),
        output_tokens=num(raw, "output_tokens"),
        total_tokens=num(raw, "total_tokens"),
        input_text_tokens=num(details, "text_tokens"),
        input_image_tokens=num(details, "image_tokens"),
        output_image_tokens=num(out_details, "image_tokens") if out_details else None,
        output_text_tokens=num(out_details, "text_tokens") if out_details else None,
    )


def parse_retry_after(
    headers: Mapping[str, str], message: str | None = None, *, now: float | None = None
) -> float | None:
    """``retry-after-ms``, then ``retry-after`` (seconds or an HTTP date, given ``now``), then as a
    last resort the number in Azure's "Please retry after N seconds" message."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            if name != "retry-after" or now is None:
                continue
            try:
                value = email.utils.parsedate_to_datetime(raw).timestamp() - now
            except (TypeError, ValueError):
                continue
        if value >= 0:
            return value
    match = _RETRY_IN_MESSAGE.search(message or "")
    return float(match.group(1)) if match else None


def _categories(err: Mapping[str, Any], inner: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    results = inner.get("content_filter_results")
    if isinstance(results, Mapping):
        found += [k for k, v in results.items() if isinstance(v, Mapping) and v.get("filtered") is True]
    details = err.get("moderation_details")
    if isinstance(details, Mapping) and isinstance(details.get("categories"), list):
        found += [str(c) for c in details["categories"]]
    if not found:
        match = _SAFETY_VIOLATIONS.search(str(err.get("message", "")))
        if match:
            found += [c.strip() for c in match.group(1).split(",") if c.strip()]
    return tuple(dict.fromkeys(found))


def _filter_stage(details: object) -> str:
    """Where the filter struck, as the body says it: ``moderation_details.moderation_stage``
    (``input`` -> ``prompt``, ``output``). Azure's ``content_policy_violation`` body carries no
    stage field (only its message differs), and we never classify by message text, so it is
    ``unknown`` there."""
    if isinstance(details, Mapping):
        stage = details.get("moderation_stage")
        if stage == "input":
            return "prompt"
        if stage == "output":
            return "output"
    return "unknown"


def _content_filtered(err: Mapping[str, Any], code: str, message: str) -> ContentFiltered:
    inner = err.get("inner_error") or err.get("innererror") or {}
    inner = inner if isinstance(inner, Mapping) else {}
    stage = _filter_stage(err.get("moderation_details"))
    categories = _categories(err, inner)
    shown = ", ".join(categories) or "unspecified"
    revised = inner.get("revised_prompt") if isinstance(inner.get("revised_prompt"), str) else None
    return ContentFiltered(
        f"rejected by the content filter (categories: {shown}): {message}",
        categories=categories,
        revised_prompt=revised,
        stage=stage,
        upstream_code=code,
    )


def _error_body(content: bytes) -> tuple[Mapping[str, Any], bool]:
    """The ``error`` object of an error body, and whether the body was JSON at all."""
    try:
        parsed = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return {}, False
    if isinstance(parsed, Mapping):
        err = parsed.get("error")
        return (err if isinstance(err, Mapping) else parsed), True
    return {}, False


def _from_status(dep: str, status: int, headers: Mapping[str, str], content: bytes) -> ImageGateError:
    err, is_json = _error_body(content)
    code = str(err.get("code") or "")
    inner = err.get("inner_error") if isinstance(err.get("inner_error"), Mapping) else {}
    message = str(err.get("message") or ("" if is_json else "non-JSON error body"))[:_MESSAGE_MAX]
    where = f"deployment {dep} answered {status}"
    if code in CONTENT_FILTER_CODES or (inner and inner.get("code") == "ResponsibleAIPolicyViolation"):
        return _content_filtered(err, code, message)
    if status == 429:
        retry_after = parse_retry_after(headers, message)
        return RateLimited(f"{where} (rate limited): {message}", retry_after_s=retry_after)
    if status in (401, 403, 404):
        return UpstreamRejected(
            f"{where} ({code or 'rejected'}): {message}", status_code=status, upstream_code=code
        )
    if status == 413:
        return PayloadTooLarge(f"{where}: {message}")
    if status in (400, 422):
        param = err.get("param") if isinstance(err.get("param"), str) and err.get("param") else None
        return InvalidRequest(f"{where}: {message}", field=param)
    retry_after = parse_retry_after(headers, None)
    return UpstreamStatusError(
        f"{where}: {message or code}",
        status_code=status,
        upstream_code=code or None,
        deployment=dep,
        retry_after_s=retry_after,
    )


def _images(data: object, encoded: list[memoryview]) -> tuple[GeneratedImage, ...] | None:
    """The images of ``data``; ``encoded`` holds, in order, the base64 that
    ``image_body.parse_images_body`` cut out of the items (now ``b64_json: ""``)."""
    if not isinstance(data, list) or not data:
        return None
    images: list[GeneratedImage] = []
    pending = iter(encoded)
    for item in data:
        if not isinstance(item, Mapping):
            return None
        revised = item.get("revised_prompt") if isinstance(item.get("revised_prompt"), str) else None
        if item.get("b64_json") == "":
            b64 = next(pending, None)
            if not b64:  # none left, or an empty string: no image
                return None
            images.append(GeneratedImage.from_b64(b64, revised_prompt=revised))
        elif isinstance(item.get("url"), str):
            images.append(GeneratedImage(url=item["url"], revised_prompt=revised))
        else:
            return None
    return tuple(images)


def _success(dep: str, response: httpx.Response) -> Payload | ImageGateError:
    try:
        parsed, encoded = parse_images_body(response.content)
    except orjson.JSONDecodeError:
        parsed, encoded = None, []
    images = _images(parsed.get("data"), encoded) if isinstance(parsed, Mapping) else None
    if images is None or not isinstance(parsed, Mapping):
        return UpstreamStatusError(
            f"deployment {dep} answered {response.status_code} with a malformed body",
            status_code=response.status_code,
            upstream_code="malformed_body",
            deployment=dep,
        )
    created = parsed.get("created") if isinstance(parsed.get("created"), int) else None
    headers = plain_headers(response)
    return Payload(
        images=images,
        usage=parse_usage(parsed.get("usage")),
        created=created,
        request_id=request_id_of(headers),
        region=headers.get("x-ms-region"),
    )


def plain_headers(response: httpx.Response) -> dict[str, str]:
    """The response's headers as a dict of lower-case names (the last value of a repeated one),
    for reading several: each lookup in ``httpx.Headers`` lower-cases, encodes and scans them all."""
    return dict(response.headers.multi_items())


def request_id_of(headers: Mapping[str, str]) -> str | None:
    return headers.get("apim-request-id") or headers.get("x-request-id")


@overload
def classify(dep: str, outcome: BaseException) -> ImageGateError: ...
@overload
def classify(dep: str, outcome: httpx.Response) -> Payload | ImageGateError: ...
def classify(dep: str, outcome: httpx.Response | BaseException) -> Payload | ImageGateError:
    """Map one upstream outcome into a ``Payload`` or an error of the tree.

    ``outcome`` is a response whose body has been read, or the exception the transport raised.
    Connect-phase failures become ``UpstreamNotSent`` (nothing billed, safe to retry); a read
    timeout after sending becomes ``UpstreamTimeout`` and a dropped connection ``UpstreamFailed``
    (both may have been billed).
    """
    if isinstance(outcome, ImageGateError):
        return outcome
    if isinstance(outcome, _NOT_SENT):
        return UpstreamNotSent(f"deployment {dep} unreachable: {type(outcome).__name__}", deployment=dep)
    if isinstance(outcome, httpx.TimeoutException):
        return UpstreamTimeout(f"deployment {dep} timed out after the request was sent", deployment=dep)
    if isinstance(outcome, httpx.HTTPError):
        return UpstreamFailed(
            f"deployment {dep} failed after the request was sent: {type(outcome).__name__}", deployment=dep
        )
    if isinstance(outcome, BaseException):
        return UpstreamFailed(f"deployment {dep} failed: {type(outcome).__name__}", deployment=dep)
    if 200 <= outcome.status_code < 300:
        return _success(dep, outcome)
    error = _from_status(dep, outcome.status_code, outcome.headers, outcome.content)
    if isinstance(error, UpstreamRejected | UpstreamStatusError | UpstreamNotSent):
        error.deployment = dep
    return error


def classify_stream_error(dep: str, event: Mapping[str, Any]) -> ImageGateError:
    """An ``error`` event inside a stream, classified like a 500 body with the same code rules."""
    return _from_status(dep, 500, {}, orjson.dumps(event))


# ---------------------------------------------------------------------------------------------
# streaming


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: Mapping[str, Any]


class SSEDecoder:
    """Feed it lines (without newlines); it returns an event when a blank line ends one."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        if line.startswith(":"):
            return None
        if line:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            return None
        if not self._data:
            self._event = ""
            return None
        raw = "\n".join(self._data)
        event, self._event, self._data = self._event, "", []
        if raw == "[DONE]":
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = {
                "type": "error",
                "error": {"code": "malformed_event", "message": "unparseable stream event"},
            }
        if not isinstance(data, Mapping):
            data = {
                "type": "error",
                "error": {"code": "malformed_event", "message": "stream event is not an object"},
            }
        return SSEEvent(event or str(data.get("type", "")), data)

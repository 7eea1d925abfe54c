"""The image routes: generations (JSON) and edits (multipart), deployment-scoped and v1, plain or
streamed, and the GET route serving DALL·E ``url`` results until they expire.

Success bodies follow §3: gpt-image -> ``data[].b64_json`` + ``usage``; on the v1 routes also the
top-level ``background``, ``output_format``, ``size`` and ``quality`` OpenAI returns (the dated
2025-04-01-preview schema has none of them, so the deployment routes leave them out [I]).
dall-e-3 -> ``revised_prompt``, ``prompt_filter_results``, ``url`` or ``b64_json``,
``content_filter_results``; dall-e-2 -> ``url`` or ``b64_json``. A ``url`` points back at the
emulator host the request used and stays valid for ``url_ttl_s`` (24 h) on the injected clock;
afterwards the blob route answers 403 like an expired SAS token [I].
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from imagegate.emulator import azure_errors as errors
from imagegate.emulator.azure_errors import AzureError
from imagegate.emulator.content_filter import (
    category_results,
    filtered_error,
    find_hit,
    prompt_results,
    revised_prompt,
)
from imagegate.emulator.edits import EditForm, compose_edit, read_edit_form
from imagegate.emulator.gate import (
    Call,
    admit,
    check_credentials,
    check_model,
    crash_reply,
    lookup,
    ok_headers,
)
from imagegate.emulator.latency import default_median_s, sample_latency_s
from imagegate.emulator.models import output_image_tokens
from imagegate.emulator.render import RenderSpec
from imagegate.emulator.reply import Reply, json_reply
from imagegate.emulator.state import Blob, DeploymentState, EmulatorState
from imagegate.emulator.streaming import image_events
from imagegate.emulator.usage import image_usage
from imagegate.emulator.validation import ImageParams, require_object, validate_image_request

log = logging.getLogger("imagegate.emulator")
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.bad_json() from None
    return require_object(body)


async def handle_image(state: EmulatorState, request: Request, *, route: str, v1: bool) -> Response:
    """Entry point of both image routes, both surfaces."""
    call = Call(state, request, route, v1)
    try:
        return await _run(call)
    except AzureError as err:
        return call.error_reply(err)
    except Exception:
        log.exception("emulator: unexpected error handling %s", request.url.path)
        return crash_reply(call)


async def _read(call: Call) -> tuple[dict[str, Any], EditForm | None]:
    if call.route == "edits":
        form = await read_edit_form(call.request)
        return form.fields, form
    return await read_json(call.request), None


async def _run(call: Call) -> Response:
    check_credentials(call)
    raw: dict[str, Any] | None = None
    form: EditForm | None = None
    if call.v1:
        raw, form = await _read(call)
        name = raw.get("model")
        if not isinstance(name, str) or not name:
            raise errors.invalid(
                "model", "Missing required parameter: 'model'.", "missing_required_parameter"
            )
        lookup(call, name)
    else:
        lookup(call, call.request.path_params["deployment"])
    dep = check_model(call)
    refused = admit(call)
    if refused is not None:
        return refused
    try:
        if raw is None:
            raw, form = await _read(call)
        params = validate_image_request(
            raw,
            dep.model,
            operation=call.route,
            api_version=call.api_version,
            form=form is not None,
            first_image_size=form.images[0].size if form and form.images else None,
        )
        return await _generate(call, dep, params, form)
    except BaseException:
        call.release()
        raise


def _usage(dep: DeploymentState, params: ImageParams, form: EditForm | None) -> dict[str, Any] | None:
    if not dep.model.is_gpt_image:
        return None
    return image_usage(
        prompt=params.prompt,
        n=params.n,
        quality=params.quality,
        width=params.width,
        height=params.height,
        input_images=form.sizes if form else None,
        high_fidelity=params.input_fidelity == "high",
        partial_images=params.partial_images if params.stream else 0,
    )


def _latency(call: Call, dep: DeploymentState, params: ImageParams) -> float:
    tokens = output_image_tokens(params.quality, params.width, params.height) if dep.model.is_gpt_image else 0
    median = default_median_s(dep.model.family, output_tokens=tokens, quality=params.quality)
    return sample_latency_s(dep.spec.latency, median, dep.rng, call.state.time_scale)


def _specs(dep: DeploymentState, params: ImageParams) -> list[RenderSpec]:
    return [
        RenderSpec(
            prompt=params.prompt,
            width=params.width,
            height=params.height,
            output_format=params.output_format,
            compression=params.output_compression,
            transparent=params.background == "transparent",
            realistic=dep.spec.image_bytes == "realistic",
            index=i,
        )
        for i in range(params.n)
    ]


async def _picture_b64(state: EmulatorState, spec: RenderSpec, form: EditForm | None) -> str:
    if form is None:
        return await state.renderer.b64_async(spec)

    def produce() -> str:
        painted, _ = state.renderer.picture(spec)
        result = compose_edit(form.images[0], form.mask, painted)
        return base64.b64encode(state.renderer.encode(result, spec)).decode("ascii")

    return await state.renderer.memo_async(("edit", form.digest, spec), produce)


async def _generate(call: Call, dep: DeploymentState, params: ImageParams, form: EditForm | None) -> Response:
    state = call.state
    terms = dep.spec.terms
    style = dep.spec.content_filter_style
    hit = find_hit(params.prompt, terms, "prompt")
    if hit is not None:
        raise filtered_error(hit, style=style, model=dep.spec.model, prompt=params.prompt, stage="prompt")
    usage = _usage(dep, params, form)
    latency_s = _latency(call, dep, params)
    specs = _specs(dep, params)
    if params.stream:
        return _stream_reply(call, dep, params, specs, form, usage, latency_s)
    if latency_s > 0:
        await state.sleep(latency_s)
    out_hit = find_hit(params.prompt, terms, "output")
    if out_hit is not None:
        dep.counters.bill_images(params.n, usage)
        raise filtered_error(out_hit, style=style, model=dep.spec.model, prompt=params.prompt, stage="output")
    data = [await _item(call, dep, params, spec, form) for spec in specs]
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    if call.v1 and dep.model.is_gpt_image:
        body.update(_meta(params))
    if usage is not None and not call.plan.usage_missing:
        body["usage"] = usage
    dep.counters.bill_images(params.n, usage)
    fault = call.plan.delivery
    if fault is not None and fault.kind == "stream_error":
        fault = None  # only streamed responses carry error events
    call.record_delivery(fault)
    return json_reply(200, body, ok_headers(call), sleep=call.sleep, fault=fault, on_done=call.release)


def _meta(params: ImageParams) -> dict[str, str]:
    return {
        "background": "transparent" if params.background == "transparent" else "opaque",
        "output_format": params.output_format,
        "size": params.size,
        "quality": params.quality,
    }


async def _item(
    call: Call, dep: DeploymentState, params: ImageParams, spec: RenderSpec, form: EditForm | None
) -> dict[str, Any]:
    b64 = await _picture_b64(call.state, spec, form)
    family = dep.model.family
    if family == "gpt-image":
        return {"b64_json": b64}
    image: dict[str, Any]
    if params.response_format == "url":
        image = {"url": _store_url(call, b64, spec.index, params.output_format)}
    else:
        image = {"b64_json": b64}
    if family != "dall-e-3":
        return image
    return {
        "revised_prompt": revised_prompt(params.prompt),
        "prompt_filter_results": prompt_results(None),
        **image,
        "content_filter_results": category_results(None),
    }


def _store_url(call: Call, b64: str, index: int, fmt: str) -> str:
    state = call.state
    blob_id = str(uuid.uuid4())
    state.store_blob(f"{blob_id}/{index:02d}", Blob(state.clock() + state.config.url_ttl_s, b64, _MIME[fmt]))
    expiry = datetime.now(UTC) + timedelta(seconds=state.config.url_ttl_s)
    se = quote(expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), safe="")
    base = str(call.request.base_url).rstrip("/")
    return f"{base}/private/images/{blob_id}/generated_{index:02d}.png?se={se}&sig=emulator&sp=r&sr=b"


def _stream_reply(
    call: Call,
    dep: DeploymentState,
    params: ImageParams,
    specs: list[RenderSpec],
    form: EditForm | None,
    usage: dict[str, Any] | None,
    latency_s: float,
) -> Reply:
    state = call.state
    prefix = "image_generation" if params.operation == "generations" else "image_edit"
    out_hit = find_hit(params.prompt, dep.spec.terms, "output")
    if out_hit is not None:
        # Decided before streaming starts: the 400 arrives instead of the stream.
        dep.counters.bill_images(params.n, usage)
        style = dep.spec.content_filter_style
        raise filtered_error(out_hit, style=style, model=dep.spec.model, prompt=params.prompt, stage="output")
    fault = call.plan.delivery
    if fault is None or fault.kind != "stream_error":
        dep.counters.bill_images(params.n, usage)
    call.record_delivery(fault)
    chunks = image_events(
        prefix=prefix,
        specs=specs,
        partials=params.partial_images,
        meta=_meta(params),
        usage=None if call.plan.usage_missing else usage,
        final=lambda spec: _picture_b64(state, spec, form),
        partial=lambda spec, step: asyncio.to_thread(
            state.renderer.partial, spec, step, params.partial_images
        ),
        latency_s=latency_s,
        sleep=state.sleep,
    )
    headers = ok_headers(call, {"cache-control": "no-cache"})
    return Reply(
        200,
        headers,
        chunks=chunks,
        fault=fault,
        sleep=call.sleep,
        on_done=call.release,
        content_type="text/event-stream; charset=utf-8",
    )


async def serve_blob(state: EmulatorState, request: Request) -> Response:
    """GET for DALL·E ``url`` results."""
    key = f"{request.path_params['blob_id']}/{request.path_params['index']}"
    blob = state.blobs.get(key)
    if blob is None:
        return _blob_error(404, "BlobNotFound", "The specified blob does not exist.")
    if state.clock() >= blob.expires_at:
        return _blob_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Signed expiry time has passed.",
        )
    return Response(base64.b64decode(blob.b64), media_type=blob.content_type)


def _blob_error(status: int, code: str, message: str) -> Response:
    xml = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(xml, status_code=status, media_type="application/xml", headers={"x-ms-error-code": code})

"""Chat completions, enough for a prompt-rewriting call: a deterministic assistant reply built from
the last user message, Azure's filter annotations, and ``usage``. Chat deployments get the same
auth, api-version, quota, latency and fault handling as image deployments.

Choices ([I], also in docs/emulator.md): the reply is the last user message's text with a fixed
rendering suffix (so a gateway's "rewrite this prompt" step visibly changes the prompt and stays
reproducible); ``stream: true`` is refused with a 400 (not emulated); prompt-stage blocklist terms
give the chat-style ``content_filter`` 400 with ``innererror``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from imagegate.emulator import azure_errors as errors
from imagegate.emulator.azure_errors import AzureError
from imagegate.emulator.content_filter import category_results, find_hit
from imagegate.emulator.gate import (
    Call,
    admit,
    check_credentials,
    check_model,
    crash_reply,
    lookup,
    ok_headers,
)
from imagegate.emulator.images import read_json
from imagegate.emulator.latency import default_median_s, sample_latency_s
from imagegate.emulator.reply import json_reply
from imagegate.emulator.state import DeploymentState, EmulatorState
from imagegate.emulator.usage import text_tokens

log = logging.getLogger("imagegate.emulator")
REWRITE_SUFFIX = ", highly detailed, balanced composition, soft natural light"
MODEL_VERSIONS = {
    "gpt-4o": "gpt-4o-2024-11-20",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise errors.invalid(
            "messages", "Missing required parameter: 'messages'.", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise errors.invalid("messages", "Invalid 'messages': expected a non-empty array.", "invalid_type")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise errors.invalid(
                f"messages[{i}]",
                f"Invalid 'messages[{i}]': expected an object with a 'role'.",
                "invalid_type",
            )
    if body.get("stream"):
        raise errors.invalid("stream", "Streaming chat completions are not emulated.", "unsupported_value")
    return messages


def _filter_error(category: str, severity: str) -> AzureError:
    results: dict[str, Any] = category_results(None)
    results[category] = {"filtered": True, "severity": severity}
    results["jailbreak"] = {"filtered": False, "detected": False}
    body = {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our content "
            "filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": results},
        }
    }
    return AzureError(400, body, outcome="content_filtered")


def completion(dep: DeploymentState, messages: list[dict[str, Any]]) -> dict[str, Any]:
    users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    source = (users[-1] if users else _text_of(messages[-1].get("content"))).strip()
    reply = f"{source.rstrip('.')}{REWRITE_SUFFIX}" if source else "Please describe the image you want."
    prompt_tokens = sum(text_tokens(_text_of(m.get("content"))) + 3 for m in messages) + 3
    completion_tokens = text_tokens(reply)
    digest = hashlib.blake2b(reply.encode(), digest_size=12).hexdigest()
    safe = category_results(None)
    return {
        "id": f"chatcmpl-{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_VERSIONS.get(dep.spec.model, dep.spec.model),
        "system_fingerprint": "fp_emulator",
        "prompt_filter_results": [
            {
                "prompt_index": 0,
                "content_filter_results": {**safe, "jailbreak": {"filtered": False, "detected": False}},
            }
        ],
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "content_filter_results": safe,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def handle_chat(state: EmulatorState, request: Request, *, v1: bool) -> Response:
    call = Call(state, request, "chat", v1)
    try:
        check_credentials(call)
        body = await read_json(request) if v1 else None
        if v1:
            assert body is not None
            name = body.get("model")
            if not isinstance(name, str) or not name:
                raise errors.invalid(
                    "model", "Missing required parameter: 'model'.", "missing_required_parameter"
                )
            lookup(call, name)
        else:
            lookup(call, request.path_params["deployment"])
        dep = check_model(call)
        refused = admit(call)
        if refused is not None:
            return refused
        try:
            if body is None:
                body = await read_json(request)
            messages = _messages(body)
            joined = " ".join(_text_of(m.get("content")) for m in messages)
            hit = find_hit(joined, dep.spec.terms, "prompt")
            if hit is not None:
                raise _filter_error(hit.term.category, hit.term.severity)
            payload = completion(dep, messages)
            delay = sample_latency_s(dep.spec.latency, default_median_s("chat"), dep.rng, state.time_scale)
            if delay > 0:
                await state.sleep(delay)
        except BaseException:
            call.release()
            raise
        if call.plan.usage_missing:
            payload.pop("usage")
        dep.counters.bill_chat(
            payload.get("usage", {}).get("prompt_tokens", 0),
            payload.get("usage", {}).get("completion_tokens", 0),
        )
        fault = call.plan.delivery
        call.record_delivery(fault)
        return json_reply(200, payload, ok_headers(call), sleep=call.sleep, fault=fault, on_done=call.release)
    except AzureError as err:
        return call.error_reply(err)
    except Exception:
        log.exception("emulator: unexpected error handling %s", request.url.path)
        return crash_reply(call)

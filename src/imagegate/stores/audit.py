"""Audit helpers shared by every AuditLog adapter: prompt retention and JSON-lines export.

Whether a prompt is kept is configuration (``PromptRetention``): ``none`` keeps nothing, ``hash``
keeps its SHA-256 (enough to find every request that used the same prompt without storing it),
``full`` keeps the text. LiteLLM's equivalent, ``store_prompts_in_spend_logs``, is off by
default; so is ours (``hash``).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import replace
from typing import Any

import orjson

from imagegate.ids import new_hex_id
from imagegate.ports import AuditEvent

__all__ = ["PromptRetention", "event_to_dict", "event_to_json_line", "new_event_id", "with_prompt"]


class PromptRetention(enum.StrEnum):
    NONE = "none"
    HASH = "hash"
    FULL = "full"


def new_event_id() -> str:
    return "evt_" + new_hex_id(96)


def with_prompt(event: AuditEvent, prompt: str | None, retention: PromptRetention) -> AuditEvent:
    """``event`` with the prompt kept as ``retention`` says (and nothing else about it)."""
    if prompt is None or retention is PromptRetention.NONE:
        return replace(event, prompt=None, prompt_sha256=None)
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    kept = prompt if retention is PromptRetention.FULL else None
    return replace(event, prompt=kept, prompt_sha256=digest)


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "cost_usd": None if event.cost_usd is None else str(event.cost_usd),
        "prompt": event.prompt,
        "prompt_sha256": event.prompt_sha256,
        "details": dict(event.details),
    }


def event_to_json_line(event: AuditEvent) -> bytes:
    return orjson.dumps(event_to_dict(event)) + b"\n"

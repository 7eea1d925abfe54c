"""The content filter: per-deployment blocklist terms mapped to Azure's categories, the filter
annotations DALL·E 3 success bodies carry, and the two error styles Azure sends (§4.1).

- ``azure`` style: 400 ``content_policy_violation`` / ``invalid_request_error`` with ``inner_error``
  ``{code: ResponsibleAIPolicyViolation, content_filter_results, revised_prompt (dall-e-3)}``.
- ``moderation`` style: 400 ``moderation_blocked`` / ``image_generation_user_error`` with
  ``safety_violations=[category]`` in the message and ``moderation_details``.
- ``auto`` (default, [I]): ``moderation`` for gpt-image-2 (the 2026 capture), ``azure`` for every
  other model (the dated spec's ``dalleErrorResponse`` is the default error of both operations).

A prompt-stage term rejects the prompt (nothing billed). An output-stage term lets the prompt pass
and rejects the generated image: Azure did the work, so the emulator bills it [I]. The
``moderation=low`` parameter does not relax the emulator's blocklist [I].
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from imagegate.emulator.azure_errors import AzureError
from imagegate.emulator.config import BlockTerm

CATEGORIES = ("hate", "self_harm", "sexual", "violence")


@dataclass(frozen=True, slots=True)
class Hit:
    term: BlockTerm


def find_hit(prompt: str, terms: tuple[BlockTerm, ...], stage: str) -> Hit | None:
    """The first term of ``stage`` that occurs in ``prompt`` as whole words, case-insensitively."""
    for term in terms:
        if term.stage != stage:
            continue
        if re.search(rf"(?<!\w){re.escape(term.term)}(?!\w)", prompt, re.IGNORECASE):
            return Hit(term)
    return None


def category_results(hit: Hit | None) -> dict[str, dict[str, Any]]:
    """``dalleContentFilterResults``: the four categories, one of them filtered when hit."""
    out: dict[str, dict[str, Any]] = {}
    for cat in CATEGORIES:
        if hit is not None and hit.term.category == cat:
            out[cat] = {"filtered": True, "severity": hit.term.severity}
        else:
            out[cat] = {"filtered": False, "severity": "safe"}
    return out


def prompt_results(hit: Hit | None) -> dict[str, Any]:
    """``dalleFilterResults``: categories plus profanity, jailbreak and custom_blocklists."""
    out: dict[str, Any] = category_results(hit)
    out["profanity"] = {"detected": False, "filtered": False}
    out["jailbreak"] = {"detected": False, "filtered": False}
    out["custom_blocklists"] = {"filtered": False, "details": []}
    return out


def revised_prompt(prompt: str) -> str:
    """DALL·E 3 rewrites prompts; the emulator's rewrite is deterministic [I]."""
    return f"A detailed, high-quality image of: {prompt.strip()}"


def resolve_style(style: str, model: str) -> str:
    if style != "auto":
        return style
    return "moderation" if model.startswith("gpt-image-2") else "azure"


def filtered_error(hit: Hit, *, style: str, model: str, prompt: str, stage: str) -> AzureError:
    """The 400 Azure sends when ``hit`` blocks the prompt (stage=prompt) or the image (output)."""
    family_dalle3 = model == "dall-e-3"
    if resolve_style(style, model) == "moderation" and not model.startswith("dall-e"):
        request_id = str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": {
                "message": "Your request was rejected by the safety system. If you believe this is an "
                "error, contact us at Azure support ticket and include the request ID "
                f"{request_id}. safety_violations=[{hit.term.category}].",
                "type": "image_generation_user_error",
                "param": "",
                "code": "moderation_blocked",
                "moderation_details": {
                    "moderation_stage": "input" if stage == "prompt" else "output",
                    "categories": [hit.term.category],
                },
            }
        }
        return AzureError(400, body, outcome="content_filtered")
    if stage == "prompt":
        message = (
            "Your request was rejected as a result of our safety system. Your prompt may contain text "
            "that is not allowed by our safety system."
        )
        results = prompt_results(hit)
    else:
        message = "Generated image was filtered as a result of our safety system."
        results = category_results(hit)
    inner: dict[str, Any] = {"code": "ResponsibleAIPolicyViolation", "content_filter_results": results}
    if family_dalle3:
        inner["revised_prompt"] = revised_prompt(prompt)
    body = {
        "error": {
            "code": "content_policy_violation",
            "inner_error": inner,
            "message": message,
            "param": None,
            "type": "invalid_request_error",
        }
    }
    return AzureError(400, body, outcome="content_filtered")

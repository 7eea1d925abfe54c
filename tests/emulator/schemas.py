"""The Azure 2025-04-01-preview response schemas and examples of reference §3–§5, transcribed as
JSON Schema (validated with jsonschema_rs, which the pinned schemathesis brings), so emulator
bodies are checked against Azure's documents rather than against the emulator's own code."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}

# contentFilterSeverityResult / contentFilterDetectedResult
SEVERITY = {
    "type": "object",
    "required": ["filtered", "severity"],
    "properties": {"filtered": {"type": "boolean"}, "severity": {"enum": ["safe", "low", "medium", "high"]}},
    "additionalProperties": False,
}
DETECTED = {
    "type": "object",
    "required": ["filtered", "detected"],
    "properties": {"filtered": {"type": "boolean"}, "detected": {"type": "boolean"}},
    "additionalProperties": False,
}
_CATS = {c: SEVERITY for c in ("sexual", "violence", "hate", "self_harm")}
# dalleContentFilterResults
DALLE_CONTENT_FILTER_RESULTS = {
    "type": "object",
    "properties": _CATS,
    "required": list(_CATS),
    "additionalProperties": False,
}
# dalleFilterResults = dalleContentFilterResults + profanity + jailbreak + custom_blocklists
DALLE_FILTER_RESULTS = {
    "type": "object",
    "properties": {
        **_CATS,
        "profanity": DETECTED,
        "jailbreak": DETECTED,
        "custom_blocklists": {
            "type": "object",
            "required": ["filtered", "details"],
            "properties": {
                "filtered": {"type": "boolean"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "filtered"],
                        "properties": {"id": STR, "filtered": {"type": "boolean"}},
                    },
                },
            },
        },
    },
    "additionalProperties": False,
}
# imageGenerationsUsage
USAGE = {
    "type": "object",
    "required": ["total_tokens", "input_tokens", "output_tokens", "input_tokens_details"],
    "properties": {
        "total_tokens": INT,
        "input_tokens": INT,
        "output_tokens": INT,
        "input_tokens_details": {
            "type": "object",
            "required": ["text_tokens", "image_tokens"],
            "properties": {"text_tokens": INT, "image_tokens": INT},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
# imageResult
IMAGE_RESULT = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "b64_json": STR,
        "content_filter_results": DALLE_CONTENT_FILTER_RESULTS,
        "revised_prompt": STR,
        "prompt_filter_results": DALLE_FILTER_RESULTS,
    },
    "additionalProperties": False,
    "minProperties": 1,
}
# generateImagesResponse
GENERATE_IMAGES_RESPONSE = {
    "type": "object",
    "required": ["created", "data"],
    "properties": {
        "created": {"type": "integer"},
        "data": {"type": "array", "minItems": 1, "items": IMAGE_RESULT},
        "usage": USAGE,
    },
    "additionalProperties": False,
}
# dalleErrorResponse
DALLE_ERROR_RESPONSE = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": STR,
                "message": STR,
                "param": {"type": ["string", "null"]},
                "type": STR,
                "inner_error": {
                    "type": "object",
                    "required": ["code"],
                    "properties": {
                        "code": {"enum": ["ResponsibleAIPolicyViolation"]},
                        "content_filter_results": DALLE_FILTER_RESULTS,
                        "revised_prompt": STR,
                    },
                    "additionalProperties": False,
                },
            },
        }
    },
}
# The plain Azure envelope of 401/404/429 (§4.3, §4.4).
AZURE_CODE_MESSAGE = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": STR, "message": STR},
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}
_EVENT_COMMON = {
    "type": STR,
    "b64_json": STR,
    "created_at": {"type": "integer"},
    "size": STR,
    "quality": STR,
    "background": STR,
    "output_format": STR,
}
PARTIAL_EVENT = {
    "type": "object",
    "required": [*_EVENT_COMMON, "partial_image_index"],
    "properties": {**_EVENT_COMMON, "partial_image_index": INT},
    "additionalProperties": False,
}
COMPLETED_EVENT = {
    "type": "object",
    "required": [*_EVENT_COMMON, "usage"],
    "properties": {**_EVENT_COMMON, "usage": USAGE},
    "additionalProperties": False,
}

# §3.3: stable/2024-10-21/examples/image_generation.json (url shortened), with the
# custom_blocklists block the 2025-04-01-preview example adds.
DALLE3_EXAMPLE_REQUEST = {
    "prompt": "In the style of WordArt, Microsoft Clippy wearing a cowboy hat.",
    "n": 1,
    "style": "natural",
    "quality": "standard",
}
_SAFE = {"severity": "safe", "filtered": False}
DALLE3_EXAMPLE_RESPONSE: dict[str, Any] = {
    "created": 1698342300,
    "data": [
        {
            "revised_prompt": "A vivid, natural representation of Microsoft Clippy wearing a cowboy hat.",
            "prompt_filter_results": {
                "sexual": _SAFE,
                "violence": _SAFE,
                "hate": _SAFE,
                "self_harm": _SAFE,
                "profanity": {"detected": False, "filtered": False},
                "custom_blocklists": {"filtered": False, "details": []},
            },
            "url": "https://dalletipusw2.blob.core.windows.net/private/images/e5451cc6/generated_00.png?se=2023",
            "content_filter_results": {"sexual": _SAFE, "violence": _SAFE, "hate": _SAFE, "self_harm": _SAFE},
        }
    ],
}
# §3.2: preview/2025-04-01-preview/examples/image_edits.json
EDIT_EXAMPLE_RESPONSE: dict[str, Any] = {
    "created": 1698342300,
    "data": [{"b64_json": "iVB..."}],
    "usage": {
        "total_tokens": 100,
        "input_tokens": 50,
        "output_tokens": 50,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
    },
}
# §4.1: the DALL·E 3 content-filter payload (litellm's transcription of Azure's).
CONTENT_FILTER_EXAMPLE: dict[str, Any] = {
    "error": {
        "code": "content_policy_violation",
        "inner_error": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_results": {
                "hate": {"filtered": False, "severity": "safe"},
                "profanity": {"detected": False, "filtered": False},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": True, "severity": "low"},
            },
            "revised_prompt": "A dark and intense illustration of a man in a dramatic action scene.",
        },
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error",
    }
}


def check(schema: dict[str, Any], instance: Any) -> None:
    """Raise AssertionError listing every schema violation."""
    validator = jsonschema_rs.validator_for(schema)
    problems = [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(instance)
    ]
    assert not problems, problems


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (values dropped), to compare a body with an example."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def shape_covers(ours: Any, example: Any, path: str = "") -> list[str]:
    """Where ``ours`` lacks a key of ``example`` or has another type there."""
    if isinstance(example, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected an object"]
        out: list[str] = []
        for key, sub in example.items():
            if key not in ours:
                out.append(f"{path}/{key}: missing")
            else:
                out += shape_covers(ours[key], sub, f"{path}/{key}")
        return out
    if isinstance(example, list):
        if not isinstance(ours, list):
            return [f"{path}: expected an array"]
        if not example:
            return []
        if not ours:
            return [f"{path}: expected a non-empty array"]
        return shape_covers(ours[0], example[0], f"{path}[0]")
    return (
        [] if type(ours) is type(example) else [f"{path}: {type(ours).__name__} != {type(example).__name__}"]
    )

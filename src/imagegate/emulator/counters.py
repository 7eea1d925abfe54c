"""What each deployment has seen and what a real Azure would have billed for it, for the admin
API. A request is billed when the model produced its images (success, output-filtered, and the
delivery faults that strike after generation: hang, slow or dropped body, malformed JSON);
refusals before generation (401, 404, 400, 429, prompt filter, scripted 5xx, outages) are not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class DeploymentCounters:
    requests: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    images_billed: int = 0
    text_tokens_in: int = 0
    image_tokens_in: int = 0
    image_tokens_out: int = 0
    chat_tokens_in: int = 0
    chat_tokens_out: int = 0
    retried_requests: int = 0
    max_retry_count: int = 0
    faults_fired: Counter[str] = field(default_factory=Counter)

    def record(self, outcome: str, status: int | None) -> None:
        self.requests += 1
        self.by_outcome[outcome] += 1
        self.by_status["none" if status is None else str(status)] += 1
        if status == 429:
            self.rate_limited += 1

    def saw_retry_count(self, value: str | None) -> None:
        if value is None or not value.strip().isdigit():
            return
        count = int(value.strip())
        if count > 0:
            self.retried_requests += 1
        self.max_retry_count = max(self.max_retry_count, count)

    def bill_images(self, images: int, usage: dict[str, Any] | None) -> None:
        self.images_billed += images
        if usage:
            details = usage.get("input_tokens_details", {})
            self.text_tokens_in += int(details.get("text_tokens", 0))
            self.image_tokens_in += int(details.get("image_tokens", 0))
            self.image_tokens_out += int(usage.get("output_tokens", 0))

    def bill_chat(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.chat_tokens_in += prompt_tokens
        self.chat_tokens_out += completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": {
                "total": self.requests,
                "by_outcome": dict(sorted(self.by_outcome.items())),
                "by_status": dict(sorted(self.by_status.items())),
            },
            "rate_limited": self.rate_limited,
            "images_billed": self.images_billed,
            "tokens_billed": {
                "text_input": self.text_tokens_in,
                "image_input": self.image_tokens_in,
                "image_output": self.image_tokens_out,
                "chat_input": self.chat_tokens_in,
                "chat_output": self.chat_tokens_out,
            },
            "retried_requests": self.retried_requests,
            "max_retry_count": self.max_retry_count,
            "faults_fired": dict(sorted(self.faults_fired.items())),
        }

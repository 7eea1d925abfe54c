"""Token usage the way gpt-image responses report it (§3.1, §7.2).

Approximations ([I], also in docs/emulator.md):

- Text tokens: ``ceil(characters / 4)``, at least 1: the usual rule of thumb for English with
  OpenAI tokenizers; the emulator has no tokenizer on purpose (no dependency, no downloads).
- Output image tokens: the §7.2 table per image, the 1024x1024 row scaled by area for other sizes,
  times n; with streaming, 100 extra output tokens per partial image per image (OpenAI's
  documented surcharge).
- Input image tokens (edits): OpenAI's vision tiling rule, 65 + 129 per 512-px tile after fitting
  the image into 2048 px and its short side to 768 px; ``input_fidelity=high`` adds the 1024x1024
  high-quality row (4160) for the first image, or the 1536 rows for non-square ones.
"""

from __future__ import annotations

import math
from typing import Any

from imagegate.emulator.models import OUTPUT_TOKENS, output_image_tokens


def text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def image_input_tokens(width: int, height: int) -> int:
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    short = min(w, h)
    if short > 768:
        w, h = w * 768 / short, h * 768 / short
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return 65 + 129 * tiles


def fidelity_tokens(width: int, height: int) -> int:
    if width == height:
        return OUTPUT_TOKENS["high"]["1024x1024"]
    return OUTPUT_TOKENS["high"]["1536x1024" if width > height else "1024x1536"]


def image_usage(
    *,
    prompt: str,
    n: int,
    quality: str,
    width: int,
    height: int,
    input_images: list[tuple[int, int]] | None = None,
    high_fidelity: bool = False,
    partial_images: int = 0,
) -> dict[str, Any]:
    """The ``usage`` object of a gpt-image response."""
    text = text_tokens(prompt)
    image_in = sum(image_input_tokens(w, h) for w, h in input_images or [])
    if high_fidelity and input_images:
        image_in += fidelity_tokens(*input_images[0])
    out = n * (output_image_tokens(quality, width, height) + 100 * partial_images)
    return {
        "total_tokens": text + image_in + out,
        "input_tokens": text + image_in,
        "output_tokens": out,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
    }

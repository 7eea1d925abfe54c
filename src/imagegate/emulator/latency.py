"""How long an emulated request takes: a lognormal sample per request with a configured median and
95th percentile, or the model's default, multiplied by the global time scale (0 = instant).

Defaults ([I], §8.3 has no official figures): gpt-image models 3 s + output tokens/200 (so a
1024x1024 high image, 4160 tokens, takes ~24 s; low ~4.4 s), dall-e-3 8 s (hd 12 s), dall-e-2 4 s,
chat 0.8 s; p95 = 1.6 x median. Samples come from a seeded generator so runs repeat.
"""

from __future__ import annotations

import math
import random

from imagegate.emulator.config import LatencySpec

_Z95 = 1.6448536269514722


def default_median_s(family: str, *, output_tokens: int = 0, quality: str = "") -> float:
    if family == "gpt-image":
        return 3.0 + output_tokens / 200.0
    if family == "dall-e-3":
        return 12.0 if quality == "hd" else 8.0
    if family == "dall-e-2":
        return 4.0
    return 0.8


def sample_latency_s(
    spec: LatencySpec, default_median: float, rng: random.Random, time_scale: float
) -> float:
    """One latency sample in seconds, already multiplied by ``time_scale``."""
    if time_scale <= 0:
        return 0.0
    median = default_median if spec.median_s is None else spec.median_s
    if median <= 0:
        return 0.0
    p95 = spec.p95_s if spec.p95_s is not None else median * 1.6
    if spec.distribution == "fixed" or p95 <= median:
        return median * time_scale
    sigma = math.log(p95 / median) / _Z95
    return rng.lognormvariate(math.log(median), sigma) * time_scale

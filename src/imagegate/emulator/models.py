"""What each emulated model accepts, as data: prompt limits, n, sizes, qualities, defaults, which
optional parameters exist, and which api-versions serve it.

The emulator keeps its own table instead of reading imagegate's catalog on purpose: it imports
nothing from the gateway, so a catalog bug cannot pass in both places. Sources are the sections of
``reference/azure-images-api.md`` named next to each value; [I] marks our own choices.

Choices written down here (also in docs/emulator.md):

- ``quality=auto`` resolves to the model's Azure default (high for gpt-image-1/1.5/2, medium for
  mini) when counting tokens [I]; ``size=auto`` resolves to 1024x1024 [I].
- gpt-image-2 takes any ``WxH`` with both sides multiples of 16, aspect 1:3..3:1, at most 3840x2160
  (either orientation, i.e. long side <= 3840 and short side <= 2160) [V OpenAI spec; orientation I].
- gpt-image-1.5 allows n up to 10 as the spec says (a third party says 4) [I].
- dall-e-2 is served by dated api-versions from 2024-05-01-preview on (§1.3) and on v1 [I].
"""

from __future__ import annotations

from dataclasses import dataclass

# Dated api-versions Azure has published for inference (§1.4, §5). Any other string is unknown.
KNOWN_API_VERSIONS: tuple[str, ...] = (
    "2023-05-15",
    "2023-06-01-preview",
    "2023-07-01-preview",
    "2023-08-01-preview",
    "2023-09-01-preview",
    "2023-12-01-preview",
    "2024-02-01",
    "2024-02-15-preview",
    "2024-03-01-preview",
    "2024-04-01-preview",
    "2024-05-01-preview",
    "2024-06-01",
    "2024-07-01-preview",
    "2024-08-01-preview",
    "2024-09-01-preview",
    "2024-10-01-preview",
    "2024-10-21",
    "2024-12-01-preview",
    "2025-01-01-preview",
    "2025-02-01-preview",
    "2025-03-01-preview",
    "2025-04-01-preview",
)

# Values of ?api-version= the /openai/v1/ routes accept; absent means "latest" (§1.2).
V1_API_VERSIONS: tuple[str, ...] = ("preview", "latest", "v1")

# Versions whose output_format enum includes webp: only the v1 surface (§2.1 "Output format").
WEBP_VERSIONS: frozenset[str] = frozenset(V1_API_VERSIONS)

GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
DALLE2_SIZES = ("256x256", "512x512", "1024x1024")

# §7.2: output image tokens for gpt-image-1 by quality and size; used for the whole family [I].
OUTPUT_TOKENS: dict[str, dict[str, int]] = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model's request rules. ``family`` is gpt-image, dall-e-3, dall-e-2 or chat."""

    name: str
    family: str
    max_prompt: int = 32000
    max_n: int = 10
    sizes: tuple[str, ...] = GPT_SIZES
    flexible_sizes: bool = False
    qualities: tuple[str, ...] = ("low", "medium", "high", "auto")
    default_quality: str = "high"
    default_size: str = "auto"
    input_fidelity: bool = True
    edits: bool = True
    api_versions: tuple[str, ...] = ("2025-04-01-preview",)

    @property
    def is_gpt_image(self) -> bool:
        return self.family == "gpt-image"

    @property
    def is_chat(self) -> bool:
        return self.family == "chat"

    def version_served(self, api_version: str | None, *, v1: bool) -> bool:
        if v1:
            return True
        return api_version in self.api_versions


_DALLE3_VERSIONS = tuple(v for v in KNOWN_API_VERSIONS if v >= "2023-12-01-preview")
_DALLE2_VERSIONS = tuple(v for v in KNOWN_API_VERSIONS if v >= "2024-05-01-preview")

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("gpt-image-1", "gpt-image"),
        ModelSpec("gpt-image-1.5", "gpt-image"),
        ModelSpec("gpt-image-1-mini", "gpt-image", default_quality="medium", input_fidelity=False),
        ModelSpec(
            "gpt-image-2",
            "gpt-image",
            flexible_sizes=True,
        ),
        ModelSpec(
            "dall-e-3",
            "dall-e-3",
            max_prompt=4000,
            max_n=1,
            sizes=DALLE3_SIZES,
            qualities=("standard", "hd"),
            default_quality="standard",
            default_size="1024x1024",
            input_fidelity=False,
            edits=False,
            api_versions=_DALLE3_VERSIONS,
        ),
        ModelSpec(
            "dall-e-2",
            "dall-e-2",
            max_prompt=1000,
            sizes=DALLE2_SIZES,
            qualities=("standard",),
            default_quality="standard",
            default_size="1024x1024",
            input_fidelity=False,
            edits=False,
            api_versions=_DALLE2_VERSIONS,
        ),
        ModelSpec(
            "gpt-4o",
            "chat",
            edits=False,
            api_versions=tuple(v for v in KNOWN_API_VERSIONS if v >= "2024-05-01-preview"),
        ),
        ModelSpec(
            "gpt-4o-mini",
            "chat",
            edits=False,
            api_versions=tuple(v for v in KNOWN_API_VERSIONS if v >= "2024-07-01-preview"),
        ),
        ModelSpec("gpt-4.1", "chat", edits=False, api_versions=_DALLE2_VERSIONS),
    )
}

# The largest gpt-image-2 frame (§2.1): long side 3840, short side 2160.
FLEX_MAX_LONG = 3840
FLEX_MAX_SHORT = 2160


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1024x1536"`` -> (1024, 1536); None when it is not WxH with positive integers (ASCII
    digits only: ``str.isdigit`` is also true for ``"²"``, which ``int`` refuses, and for
    full-width digits)."""
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    w, h = int(parts[0]), int(parts[1])
    if w <= 0 or h <= 0:
        return None
    return w, h


def flexible_size_problem(w: int, h: int) -> str | None:
    """Why a gpt-image-2 size is not allowed, or None when it is."""
    if w % 16 or h % 16:
        return "width and height must both be multiples of 16"
    if max(w, h) > 3 * min(w, h):
        return "the aspect ratio must be between 1:3 and 3:1"
    if max(w, h) > FLEX_MAX_LONG or min(w, h) > FLEX_MAX_SHORT:
        return "the maximum size is 3840x2160"
    return None


def output_image_tokens(quality: str, width: int, height: int) -> int:
    """Output tokens for one image: the §7.2 table, or for other sizes the 1024x1024 row scaled by
    area (gpt-image-2's flexible sizes) [I]."""
    row = OUTPUT_TOKENS[quality]
    key = f"{width}x{height}"
    if key in row:
        return row[key]
    return max(1, round(row["1024x1024"] * (width * height) / (1024 * 1024)))

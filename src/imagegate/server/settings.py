"""Limits and switches of the HTTP face, as frozen data (the server section of the config).

The defaults are named constants so a reader sees every bound in one place. Sizes are bytes,
durations carry their unit.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "ServerLimits"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """Bounds on what a client may send.

    ======================  ==========  ==================================================
    field                   default     why
    ======================  ==========  ==================================================
    max_json_body_bytes     1 MiB       a 32,000-character prompt is ~128 KiB in UTF-8
    max_multipart_bytes     64 MiB      the whole edit request, all images and the mask
    max_images              16          what the gpt-image edit API accepts
    max_image_bytes         50 MiB      Azure's per-image limit for edits
    max_mask_bytes          4 MiB       Azure's limit for the mask
    max_image_pixels        40 M        Pillow decompression-bomb guard (8K×5K)
    ======================  ==========  ==================================================
    """

    max_json_body_bytes: int = 1 * MIB
    max_multipart_bytes: int = 64 * MIB
    max_images: int = 16
    max_image_bytes: int = 50 * MIB
    max_mask_bytes: int = 4 * MIB
    max_image_pixels: int = 40_000_000


DEFAULT_LIMITS = ServerLimits()

"""Fresh virtual-key material: the plaintext (shown once), its hash, a display prefix, an id.

Randomness comes from :mod:`secrets`; the hash is :func:`imagegate.policy.keys.hash_key`
(HMAC-SHA256 with the pepper — see there for why a fast keyed hash is right for 256-bit keys).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from imagegate.policy.keys import KEY_PREFIX, hash_key

__all__ = ["KeyMaterial", "new_key_material"]

DISPLAY_CHARS = 4  # of the random part: 24 bits of 256, enough to tell keys apart in a list


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    key_id: str
    prefix: str
    secret_hash: str = field(repr=False)
    plaintext: str = field(repr=False)


def new_key_material(pepper: bytes) -> KeyMaterial:
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return KeyMaterial(
        key_id="key_" + secrets.token_hex(6),
        prefix=plaintext[: len(KEY_PREFIX) + DISPLAY_CHARS],
        secret_hash=hash_key(plaintext, pepper),
        plaintext=plaintext,
    )

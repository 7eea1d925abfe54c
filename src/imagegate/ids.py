"""Unique ids for requests, audit events, quota leases and budget reservations.

``uuid.uuid4()`` and ``secrets.token_hex()`` read the kernel's random source on every call (a
``getrandom`` system call, plus a ``UUID`` object for the former); the gateway makes four such ids
per image request, ~3 % of its CPU under load. These ids must be *unique*, not *secret*: none of
them grants anything (virtual keys, URL-signing secrets and key ids still come from ``secrets``).
So they come from a Mersenne Twister seeded once per process from the OS (``random.Random()``
seeds itself from ``os.urandom``) and reseeded in every forked child, so two workers never share
a sequence. 128 bits per id, as many as a UUID4 has, for ids shared across replicas (leases in
Redis) as much as for local ones.
"""

from __future__ import annotations

import os
import random

__all__ = ["new_hex_id"]

_source = random.Random()


def _reseed() -> None:
    _source.seed()  # from os.urandom


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_hex_id(bits: int = 128) -> str:
    """``bits`` random bits (a multiple of 4) as lower-case hex, zero-padded: 32 characters by
    default, like ``uuid.uuid4().hex``."""
    return f"{_source.getrandbits(bits):0{bits // 4}x}"

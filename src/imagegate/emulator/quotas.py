"""Per-deployment request quotas as Azure enforces them (§8.1): requests-per-minute evaluated over
short fixed windows (1 s or 10 s; ``rpm/60*window_s`` requests per window, at least one), plus a
concurrency limit. Both answer with the call-rate 429.

Choices ([I], also in docs/emulator.md):

- Windows are fixed and aligned to the injected clock (``floor(now / window_s)``); retry-after is
  the whole seconds left in the current window, at least 1. Windows and retry-after are in real
  emulated seconds: the time scale does not touch them (it only scales latency).
- Every request that reaches the deployment counts, including ones later rejected with 400: the
  limiter sits in front of the model, like Azure's.
- The concurrency limit answers 429 with ``retry-after: 1``.
- ``x-ratelimit-remaining-requests`` is what is left in the current window after this request.

Hand-written rather than with ``limits`` (a dependency already): the emulator needs Azure's
clock-aligned fixed windows read from an injected clock, the exact seconds to the window's end for
``retry-after``, and the in-flight count next to it; that is twenty lines, less than the adapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Admission:
    """The limiter's answer: admitted, or retry after ``retry_after_s``; ``remaining`` for the
    header either way."""

    admitted: bool
    remaining: int
    retry_after_s: int = 0


class WindowQuota:
    """Fixed-window request counter plus an in-flight counter for one deployment."""

    def __init__(self, per_window: int, window_s: float, concurrency: int) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self.concurrency = concurrency
        self._window = -1
        self._used = 0
        self.in_flight = 0

    def reset(self) -> None:
        self._window = -1
        self._used = 0

    def remaining(self, now: float) -> int:
        self._roll(now)
        return max(0, self.per_window - self._used)

    def _roll(self, now: float) -> None:
        window = math.floor(now / self.window_s)
        if window != self._window:
            self._window = window
            self._used = 0

    def admit(self, now: float) -> Admission:
        """Count one request at ``now``; on success the caller must call :meth:`release` later."""
        self._roll(now)
        if self._used >= self.per_window:
            left = (self._window + 1) * self.window_s - now
            return Admission(False, 0, max(1, math.ceil(left)))
        if self.in_flight >= self.concurrency:
            return Admission(False, max(0, self.per_window - self._used), 1)
        self._used += 1
        self.in_flight += 1
        return Admission(True, self.per_window - self._used)

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

"""Per-request overrides, as a short explicit list of headers (never a bag of kwargs).

==============================  =====================================================
header                          meaning (as the library's keyword of the same name)
==============================  =====================================================
``x-imagegate-translate``       ``true``/``false``: map parameters meant for another model
``x-imagegate-fallback``        ``any`` (the configured chain), ``same-model`` or ``none``
``x-imagegate-deadline-s``      seconds the whole request may take
``x-imagegate-degrade``         ``true``: lower the quality if that is what meets the deadline
==============================  =====================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagegate.errors import InvalidRequest
from imagegate.policy.fallback import FALLBACK_MODES

__all__ = ["NO_OPTIONS", "RequestOptions", "options_from_headers"]

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
CLIENT_TIMEOUT_MARGIN_S = 1.0  # the answer must reach a client before its read timeout does


@dataclass(frozen=True, slots=True)
class RequestOptions:
    translate: bool | None = None
    fallback: str | None = None
    deadline_s: float | None = None
    degrade: bool = False
    # not a header: the caller's key limits which models may serve it, fallbacks included
    fallback_models: tuple[str, ...] | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AsyncImageGate.generate``/``edit``/``stream``."""
        out: dict[str, Any] = {}
        if self.fallback_models is not None:
            out["fallback_models"] = self.fallback_models
        if self.translate is not None:
            out["translate"] = self.translate
        if self.fallback is not None:
            out["fallback"] = self.fallback
        if self.deadline_s is not None:
            out["deadline_s"] = self.deadline_s
        if self.degrade:
            out["degrade"] = True
        return out


NO_OPTIONS = RequestOptions()


def _flag(headers: Mapping[str, str], name: str) -> bool | None:
    raw = headers.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidRequest.for_field(name, raw, "true or false")


def _client_read_timeout(headers: Mapping[str, str]) -> float | None:
    """The read timeout the official SDKs announce (``x-stainless-read-timeout``), in seconds;
    ``None`` when absent or not a positive number (not our header: never an error)."""
    raw = headers.get("x-stainless-read-timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def options_from_headers(headers: Mapping[str, str], *, stream: bool = False) -> RequestOptions:
    """The per-request options. A non-streamed answer is sent whole, when it is ready, so the
    client's read timeout (``x-stainless-read-timeout``, which the openai SDKs send) bounds it
    too: past it the SDK gives up and retries while the gateway would go on working (and maybe
    billing) for nobody. The deadline is therefore at most that timeout less a margin for the
    answer to arrive; the gateway's 504 at the deadline says not to retry."""
    deadline_s = None
    raw_deadline = headers.get("x-imagegate-deadline-s")
    if raw_deadline is not None:
        try:
            deadline_s = float(raw_deadline)
        except ValueError:
            deadline_s = math.nan
        if not math.isfinite(deadline_s) or not 0 < deadline_s <= 3600:
            raise InvalidRequest.for_field(
                "x-imagegate-deadline-s", raw_deadline, "a number of seconds in (0, 3600]"
            )
    fallback = headers.get("x-imagegate-fallback")
    if fallback is not None:
        fallback = fallback.strip().lower()
        if fallback not in FALLBACK_MODES:
            raise InvalidRequest.for_field(
                "x-imagegate-fallback", headers["x-imagegate-fallback"], "one of " + ", ".join(FALLBACK_MODES)
            )
    read_timeout = None if stream else _client_read_timeout(headers)
    if read_timeout is not None:
        bound = read_timeout - min(CLIENT_TIMEOUT_MARGIN_S, read_timeout / 10)
        deadline_s = bound if deadline_s is None else min(deadline_s, bound)
    return RequestOptions(
        translate=_flag(headers, "x-imagegate-translate"),
        fallback=fallback,
        deadline_s=deadline_s,
        degrade=bool(_flag(headers, "x-imagegate-degrade")),
    )

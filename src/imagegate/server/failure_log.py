"""How background work reports its failures: one line per kind of failure, not a traceback storm.

The gateway's background loops (the active prober, the gauge refresher, the housekeeping sweeper)
and each ``/metrics`` scrape retry forever; while what they read is down (Redis, the database)
each of them fails every few seconds. A :class:`FailureLog` per activity logs one WARNING line
when it starts failing, or fails in another way: what failed and why in one line (a store's
``StorageError.detail``: where, without a password, and the driver's one-line error). The same
failure again is logged only at DEBUG, each time with its traceback; one INFO line says when the
activity works again. ``/readyz`` and the metrics say the rest.
"""

from __future__ import annotations

import logging

from imagegate.errors import ImageGateError, StorageError

__all__ = ["FailureLog", "describe_failure"]


def describe_failure(exc: BaseException) -> str:
    """One line: a store failure's detail (or message), our tree's message, or a foreign
    exception's type and the first line of its text."""
    if isinstance(exc, StorageError) and exc.detail:
        return exc.detail
    if isinstance(exc, ImageGateError):
        return exc.message.splitlines()[0] if exc.message else type(exc).__name__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


class FailureLog:
    """The failures of one background activity (``what``: "active probing", ...)."""

    def __init__(self, logger: logging.Logger, what: str, *, retry_every_s: float | None = None) -> None:
        self._log = logger
        self._what = what
        self._retry = f" (retrying every {retry_every_s:g} s)" if retry_every_s else ""
        self._last: str | None = None  # the failure last reported; None while it works

    def failed(self, exc: BaseException) -> None:
        why = describe_failure(exc)
        if why != self._last:
            self._last = why
            self._log.warning("imagegate: %s failed%s: %s", self._what, self._retry, why)
        self._log.debug("imagegate: %s failed", self._what, exc_info=exc)

    def succeeded(self) -> None:
        if self._last is not None:
            self._last = None
            self._log.info("imagegate: %s works again", self._what)

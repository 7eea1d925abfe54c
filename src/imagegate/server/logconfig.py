"""Logging for a gateway process: every line on stderr is one JSON object.

``{"ts": "2026-12-02T07:14:40.123Z", "level": "info", "logger": "imagegate.server.access", ...}``:
an access line (already a JSON object, ``server.middleware``) keeps its fields after these three;
any other record has ``message`` and, with an exception, ``exc`` (the traceback as one string,
so it stays one line for a log pipeline). ``serve`` hands uvicorn the same formatter
(``uvicorn_log_config``), so its "Started server process" lines are JSON too.

A record logged while a request is served (a failed upstream attempt, an unexpected error)
carries that request's ``request_id``: the request-id middleware sets ``REQUEST_ID`` (a context
variable, so it follows the request's task and nothing else) and ``RequestIdFilter`` stamps it
on each record as it is handled.

A request the graceful shutdown cuts off once its response has started ends in the
CancelledError uvicorn cancelled it with, which uvicorn reports as "Exception in ASGI
application" with a traceback, at ERROR; ``ShutdownCancelFilter`` drops that record (the gateway
logs one warning line for it, ``server.middleware.ErrorMiddleware``).

Applied by ``app_from_environ`` (each uvicorn worker), never on import, so embedding the app
or testing it leaves the host's logging alone.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "RequestIdFilter",
    "ShutdownCancelFilter",
    "configure_logging",
    "uvicorn_log_config",
]

ACCESS_LOGGER = "imagegate.server.access"
REQUEST_ID: ContextVar[str | None] = ContextVar("imagegate_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` with the request being served, if any (never filters out)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class ShutdownCancelFilter(logging.Filter):
    """Drops uvicorn's report of a request task that ended in a CancelledError: uvicorn cancels
    request tasks only when a graceful shutdown runs out of time, and that is no exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(exc, asyncio.CancelledError)
            and record.getMessage().startswith("Exception in ASGI application")
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        head = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        if record.name == ACCESS_LOGGER and message.startswith("{") and not record.exc_info:
            # the access line is a JSON object already: splice the head in front of its fields
            return orjson.dumps(head).decode()[:-1] + "," + message[1:]
        line: dict[str, Any] = {**head, "message": message}
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "info") -> None:
    """Send ``imagegate.*`` records to stderr at ``level`` as JSON lines (idempotent)."""
    root = logging.getLogger("imagegate")
    if any(getattr(h, "_imagegate", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler._imagegate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger(ACCESS_LOGGER).propagate = True  # one handler, on "imagegate", for all


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's ``log_config``: its own records as JSON lines on stderr too."""
    formatter = {"()": f"{__name__}.JsonFormatter"}
    handler = {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"shutdown_cancel": {"()": f"{__name__}.ShutdownCancelFilter"}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper(), "filters": ["shutdown_cancel"]},
            "uvicorn.access": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }

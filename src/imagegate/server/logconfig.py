"""Logging for a gateway process: JSON access lines as they are, other records one line each.

Applied by ``app_from_environ`` (each uvicorn worker), never on import, so embedding the app
or testing it leaves the host's logging alone.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str = "info") -> None:
    """Send ``imagegate.*`` records to stderr at ``level`` (idempotent)."""
    root = logging.getLogger("imagegate")
    if any(getattr(h, "_imagegate", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._imagegate = True  # type: ignore[attr-defined]
    access = logging.StreamHandler(sys.stderr)
    access.setFormatter(logging.Formatter("%(message)s"))
    access._imagegate = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    access_logger = logging.getLogger("imagegate.server.access")
    access_logger.addHandler(access)
    access_logger.propagate = False

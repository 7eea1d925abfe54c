"""Keep the objects made at start-up out of the cyclic garbage collector's full collections.

A started gateway holds ~150k long-lived, GC-tracked objects (FastAPI, pydantic and SQLAlchemy
classes and schemas, routes, configuration). CPython's collector walks all of them in every
full (generation 2) collection, and under load the objects alive in in-flight requests keep
getting promoted to the old generation, so full collections keep coming: measured on the gateway
at 16 concurrent image requests (``gc.callbacks`` timing, ``bench/bench_gateway.py --pin``
load): one full collection every ~1,000 requests, ~100 ms each, with the event loop stopped for
all of it. ``gc.freeze()`` after start-up moves what exists then into a permanent generation that
no collection walks; the collections that remain look only at objects made since.

``gc.collect()`` runs first, so no start-up garbage is frozen for good. Cyclic garbage made later
is collected as before. Called once from the uvicorn factory (``app_from_environ``), after the
app is built; ``IMAGEGATE_GC_FREEZE=0`` turns it off. Why by hand: it is two standard-library
calls, and where to make them (after start-up, before serving) is the gateway's to decide.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping

__all__ = ["freeze_startup_objects"]


def freeze_startup_objects(environ: Mapping[str, str]) -> int:
    """Collect, then freeze every object alive now; the number frozen (0 when turned off)."""
    setting = environ.get("IMAGEGATE_GC_FREEZE", "1").strip().lower()
    if setting in {"0", "false", "no", "off"}:
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

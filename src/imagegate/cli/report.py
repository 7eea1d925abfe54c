"""How ``generate`` and ``edit`` report a result: a short human summary, or ``--json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer

from imagegate.cli.running import err_console
from imagegate.types import ImageResult

__all__ = ["report"]


def _as_json(result: ImageResult, files: list[Path]) -> dict[str, Any]:
    cost = result.cost
    return {
        "files": [str(f) for f in files],
        "model": result.model,
        "deployment": result.deployment,
        "region": result.region,
        "request_id": result.request_id,
        "latency_s": round(result.latency_s, 3),
        "cost_usd": str(cost.usd) if cost else None,
        "cost_estimated": cost.estimated if cost else None,
        "cost_source": cost.source if cost else None,
        "usage": None
        if result.usage is None
        else {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "total_tokens": result.usage.total_tokens,
        },
        "images": [
            {
                "format": i.format,
                "width": i.width,
                "height": i.height,
                "model": i.model or result.model,
                "deployment": i.deployment or result.deployment,
            }
            for i in result.images
        ],
        "degraded": result.degraded,
        "fallback_from": result.fallback_from,
        "attempts": [
            {"deployment": a.deployment, "outcome": a.outcome, "status": a.status_code, "delay_s": a.delay_s}
            for a in result.attempts
        ],
        "changes": [str(c) for c in result.changes],
        "change_details": [
            {"field": c.field, "old": _plain(c.old), "new": _plain(c.new), "reason": c.reason}
            for c in result.changes
        ],
    }


def _plain(value: object) -> object:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def report(result: ImageResult, files: list[Path], *, as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps(_as_json(result, files), option=orjson.OPT_INDENT_2).decode())
        return
    for path in files:
        typer.echo(str(path))
    cost = result.cost
    where = f"{result.deployment} ({result.region})" if result.region else result.deployment
    usage = result.usage
    tokens = (
        f"{usage.input_tokens} in / {usage.output_tokens} out tokens" if usage else "no token usage reported"
    )
    price = "unknown"
    if cost is not None:
        price = f"${cost.usd}" + (" (estimated)" if cost.estimated else "")
    err_console.print(f"cost {price} · {tokens}")
    timing = f"{result.latency_s:.1f}s · {len(result.attempts)} attempt(s)"
    err_console.print(f"deployment {where} · model {result.model} · {timing}")
    if len(result.served_by) > 1:
        served = ", ".join(f"{model} on {dep}" for model, dep in result.served_by)
        err_console.print(f"served by {served}")
    if result.fallback_from:
        err_console.print(f"fallback: asked for {result.fallback_from}, served by {result.model}")
    if result.degraded:
        err_console.print("degraded: quality lowered to meet the deadline")
    for change in result.changes:
        err_console.print(f"changed: {change}")

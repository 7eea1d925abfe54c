"""``imagegate price``: what a request would cost, before spending anything."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import typer

from imagegate import config_load
from imagegate.catalog import default_catalog
from imagegate.cli.running import config_option, err_console, fail_on_errors
from imagegate.policy.pricing import estimate


def price(
    model: str = typer.Option(
        ..., "--model", "-m", help="Catalog model, or a deployment/logical model of --config."
    ),
    size: str | None = typer.Option(None, help="WIDTHxHEIGHT or auto (auto prices the largest size)."),
    quality: str | None = typer.Option(None, help="Quality (default: the model's default)."),
    n: int = typer.Option(1, "--n", "-n", min=1, help="How many images."),
    prompt: str | None = typer.Option(None, help="Optional prompt, to add its text tokens."),
    config: Path | None = config_option,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Estimate the cost of a request (e.g. --model gpt-image-1 --size 1024x1024 --quality high --n 4)."""
    with fail_on_errors():
        catalog = default_catalog()
        if model in catalog:
            spec, override = catalog.get(model), None
        else:
            dep = config_load.load(config, dict(os.environ)).deployments_for(model)[0]
            spec, override = catalog.get(dep.model), dep.price_override
        cost = estimate(spec, size=size, quality=quality, n=n, prompt=prompt, override=override)
        if as_json:
            out = {
                "model": spec.name,
                "n": n,
                "per_image_usd": str(cost.per_image_usd),
                "total_usd": str(cost.usd),
                "source": cost.source,
            }
            typer.echo(orjson.dumps(out).decode())
            return
        typer.echo(f"${cost.rounded(3)}")
        what = f"{spec.name}, {size or 'auto'}, {quality or spec.default_quality}"
        err_console.print(f"{n} × ${cost.per_image_usd} per image ({what}) — estimate")
        err_console.print(f"[dim]source: {cost.source}[/]")

"""``imagegate models``: the catalog (capabilities, prices, retirement) as a table."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson
import typer
from rich.table import Table

from imagegate.catalog import ModelSpec, default_catalog
from imagegate.cli.running import out_console


def _price(spec: ModelSpec) -> str:
    p = spec.pricing
    if p.kind == "tokens":
        text, image_in, out = p.text_input_per_1m, p.image_input_per_1m, p.image_output_per_1m
        return f"${text} text, ${image_in} image in, ${out} out /1M tok"
    prices: list[Decimal] = [v for row in p.per_image.values() for v in row.values()]
    return f"${min(prices)}-${max(prices)} per image"


def _sizes(spec: ModelSpec) -> str:
    return spec.allowed_sizes_text().removeprefix("one of ")


def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the models imagegate knows: sizes, qualities, limits, prices and retirement."""
    catalog = default_catalog()
    today = dt.date.today()
    if as_json:
        rows = [
            {
                "model": s.name,
                "sizes": list(s.sizes),
                "size_rule": s.size_rule.describe() if s.size_rule else None,
                "qualities": list(s.qualities),
                "default_quality": s.default_quality,
                "n_max": s.n_max,
                "edits": s.edits,
                "streaming": s.streaming,
                "price": _price(s),
                "price_source": s.pricing.source,
                "price_checked": str(s.pricing.checked),
                "retirement": str(s.retirement) if s.retirement else None,
            }
            for s in catalog.models.values()
        ]
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table(title="imagegate model catalog", show_lines=True)
    for column in ("model", "sizes", "quality (default)", "n", "edits / stream", "price", "retirement"):
        table.add_column(column)
    for s in catalog.models.values():
        warning = s.retirement_status(today)
        table.add_row(
            s.name,
            _sizes(s),
            f"{', '.join(s.qualities)} ({s.default_quality})",
            f"1-{s.n_max}",
            f"{'yes' if s.edits else 'no'} / {'yes' if s.streaming else 'no'}",
            f"{_price(s)}\n[dim]checked {s.pricing.checked}[/]",
            f"[yellow]{s.retirement}[/]" if warning else str(s.retirement or "-"),
        )
    out_console().print(table)
    out_console().print("[dim]price sources: imagegate models --json[/]")

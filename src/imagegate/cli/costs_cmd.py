"""``imagegate costs``: spend from the cost ledger, grouped, with the month's projection.

Per key, model and day the request rows are summed (everything billed for a request); per
deployment, the attempt rows (what each deployment billed). The projection is linear from
month-to-date, priced under the volume-discount tiers given with ``--tier``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import typer

from imagegate.cli.database import database_option, now_utc, open_database
from imagegate.cli.running import fail_on_errors, out_console
from imagegate.errors import InvalidRequest
from imagegate.policy.budget import Period, window_start
from imagegate.policy.projection import DiscountTier, MonthProjection, parse_tier, project_month
from imagegate.ports import CostGroup, CostRow

__all__ = ["costs", "parse_since"]

_RELATIVE = re.compile(r"^(\d+)([dhm])$")
_FORMATS = ("table", "csv", "json")


_TIER = "THRESHOLD_USD=PERCENT: a threshold >= 0 and a discount from 0 to 100 percent, e.g. 1000=5"
_WHEN = "a date (2026-11-01), an ISO datetime, 7d/24h/90m, today, week or month"


def parse_since(value: str, now: datetime, *, option: str = "--since") -> datetime:
    """``2026-11-01``, an ISO datetime, ``7d`` / ``24h`` / ``90m`` ago, ``today``, ``week``, ``month``.
    A bad value is an ``InvalidRequest`` naming ``option``, the value and what is allowed."""
    named = {"today": Period.DAY, "week": Period.WEEK, "month": Period.MONTH}
    if value in named:
        return window_start(named[value], now)
    m = _RELATIVE.match(value)
    try:
        if m:
            unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
            return now - timedelta(**{unit: int(m.group(1))})
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):  # not a time, or further back than datetime reaches
        raise InvalidRequest.for_field(option, value, _WHEN) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _projection_dict(p: MonthProjection) -> dict[str, Any]:
    return {
        "month_start": p.month_start.isoformat(),
        "elapsed_fraction": str(p.elapsed_fraction),
        "month_to_date_usd": str(p.month_to_date_usd),
        "projected_list_usd": str(p.projected_list_usd),
        "projected_discounted_usd": str(p.projected_discounted_usd),
        "tier_threshold_usd": None if p.tier_threshold_usd is None else str(p.tier_threshold_usd),
        "method": p.method,
    }


def _render(fmt: str, by: CostGroup, rows: list[CostRow], projection: MonthProjection) -> None:
    total = sum((r.cost_usd for r in rows), Decimal(0))
    if fmt == "json":
        out = {
            "by": by.value,
            "rows": [
                {
                    "group": r.group,
                    "requests": r.requests,
                    "images": r.images,
                    "cost_usd": str(r.cost_usd),
                    "estimated": r.estimated,
                }
                for r in rows
            ],
            "total_usd": str(total),
            "projection": _projection_dict(projection),
        }
        typer.echo(orjson.dumps(out).decode())
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([by.value, "requests", "images", "cost_usd", "estimated"])
        for r in rows:
            writer.writerow([r.group, r.requests, r.images, r.cost_usd, r.estimated])
        typer.echo(buf.getvalue(), nl=False)
        return
    from rich.table import Table

    what = "attempts" if by is CostGroup.DEPLOYMENT else "requests"
    table = Table(by.value, what, "images", "cost (USD)", "estimated")
    for r in rows:
        table.add_row(r.group, str(r.requests), str(r.images), f"{r.cost_usd:.4f}", str(r.estimated))
    table.add_row(
        "total", str(sum(r.requests for r in rows)), str(sum(r.images for r in rows)), f"{total:.4f}", ""
    )
    console = out_console()
    console.print(table)
    p = projection
    tier = f", tier above ${p.tier_threshold_usd}" if p.tier_threshold_usd is not None else ""
    console.print(
        f"month to date ${p.month_to_date_usd:.2f} ({p.elapsed_fraction * 100:.1f}% of the month elapsed); "
        f"projected ${p.projected_list_usd} at list price, "
        f"${p.projected_discounted_usd} after discounts{tier} ({p.method})"
    )


def costs(
    by: str = typer.Option("key", "--by", help="Group by key, model, deployment or day."),
    since: str | None = typer.Option(None, "--since", help="From: 2026-11-01, 7d, 24h, today, week, month."),
    until: str | None = typer.Option(None, "--until", help="Until (exclusive), same forms as --since."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    tiers: list[str] = typer.Option([], "--tier", help="Volume discount THRESHOLD_USD=PERCENT (repeatable)."),
    database_url: str | None = database_option,
) -> None:
    """Spend from the cost ledger, grouped, plus this month's projected spend."""
    with fail_on_errors():
        try:
            group = CostGroup(by)
        except ValueError:
            raise InvalidRequest.for_field("--by", by, "one of key, model, deployment, day") from None
        if fmt not in _FORMATS:
            raise InvalidRequest.for_field("--format", fmt, "one of " + ", ".join(_FORMATS))
        discount: list[DiscountTier] = []
        for tier in tiers:
            try:
                discount.append(parse_tier(tier))
            except ValueError:
                raise InvalidRequest.for_field("--tier", tier, _TIER) from None
        now = now_utc()
        start = None if since is None else parse_since(since, now)
        end = None if until is None else parse_since(until, now, option="--until")

        async def run() -> tuple[list[CostRow], Decimal]:
            async with open_database(database_url) as stores:
                rows = await stores.ledger.summarize(group, since=start, until=end)
                mtd = await stores.ledger.total(since=window_start(Period.MONTH, now))
                return rows, mtd

        rows, mtd = asyncio.run(run())
        _render(fmt, group, rows, project_month(mtd, now, discount))

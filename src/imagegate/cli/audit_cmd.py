"""``imagegate audit export``: the audit log as JSON lines (who, what, when, outcome, cost)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from imagegate.cli.costs_cmd import parse_since
from imagegate.cli.database import database_option, now_utc, open_database
from imagegate.cli.running import err_console, fail_on_errors
from imagegate.stores.audit import event_to_json_line

app = typer.Typer(help="The audit log of requests and admin changes.", no_args_is_help=True)


@app.command()
def export(
    since: str | None = typer.Option(None, "--since", help="From: 2026-11-01, 7d, 24h, today, week, month."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout)."),
    database_url: str | None = database_option,
) -> None:
    """Write every audit event (from --since) as one JSON object per line."""
    with fail_on_errors():
        start = None if since is None else parse_since(since, now_utc())

        async def run() -> int:
            count = 0
            sink = output.open("wb") if output is not None else sys.stdout.buffer
            try:
                async with open_database(database_url) as stores:
                    async for event in stores.audit.export(since=start):
                        sink.write(event_to_json_line(event))
                        count += 1
            finally:
                if output is not None:
                    sink.close()
                else:
                    sink.flush()
            return count

        count = asyncio.run(run())
        err_console.print(f"exported {count} audit event(s)" + (f" to {output}" if output else ""))

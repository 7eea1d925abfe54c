"""``imagegate db upgrade|sweep``: migrate the database explicitly, and release what crashes left."""

from __future__ import annotations

import asyncio

import typer

from imagegate.cli.database import database_option, now_utc, open_database
from imagegate.cli.running import err_console, fail_on_errors
from imagegate.stores.maintenance import DEFAULT_HOLD_MAX_AGE_S, sweep
from imagegate.stores.migrate import current_revision

app = typer.Typer(help="The governance database: migrations and housekeeping.", no_args_is_help=True)


@app.command()
def upgrade(database_url: str | None = database_option) -> None:
    """Create or upgrade the tables to the newest revision (the gateway also does this at start-up)."""
    with fail_on_errors():

        async def run() -> str | None:
            async with open_database(database_url) as stores:  # migrates to head on open
                return await current_revision(stores.engine)

        err_console.print(f"database at revision {asyncio.run(run())}")


@app.command("sweep")
def sweep_command(
    stale_after_s: float = typer.Option(
        DEFAULT_HOLD_MAX_AGE_S, "--stale-after-s", min=60, help="Release budget holds older than this."
    ),
    database_url: str | None = database_option,
) -> None:
    """Release budget holds left by crashed requests; purge expired idempotency keys."""
    with fail_on_errors():

        async def run() -> tuple[int, int]:
            async with open_database(database_url) as stores:
                report = await sweep(
                    stores.budgets, stores.idempotency, now_utc(), hold_max_age_s=stale_after_s
                )
                return report.released_holds, report.purged_idempotency_keys

        released, purged = asyncio.run(run())
        err_console.print(
            f"released {released} stale budget hold(s); purged {purged} expired idempotency key(s)"
        )

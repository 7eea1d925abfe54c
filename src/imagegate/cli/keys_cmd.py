"""``imagegate keys create|list|update|revoke``: virtual API keys, their scopes and budgets.

``--models`` is checked against the gateway's configuration when the CLI has it (``--config``,
else ``$IMAGEGATE_CONFIG`` or the Azure variables, as ``imagegate serve`` finds it): a name the
gateway does not serve is refused. Without one the names cannot be checked, and a note says so.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

import orjson
import typer
from rich.markup import escape

from imagegate.cli.database import database_option, now_utc, open_database, pepper_option
from imagegate.cli.running import err_console, fail_on_errors, out_console
from imagegate.config_load import load
from imagegate.errors import ConfigError, InvalidRequest
from imagegate.policy.budget import Period, parse_usd
from imagegate.policy.keys import QUALITY_RANK, check_models
from imagegate.ports import KeyScope
from imagegate.stores.admin import KeyAdmin, KeyView
from imagegate.stores.sql import SqlStores

app = typer.Typer(help="Create, list, update and revoke virtual API keys.", no_args_is_help=True)

ACTOR = "cli"

config_option = typer.Option(
    None,
    "--config",
    "-c",
    help="The gateway's YAML configuration, to check --models against (default: $IMAGEGATE_CONFIG "
    "or the Azure variables; without one, --models is not checked).",
)


def _admin(stores: SqlStores) -> KeyAdmin:
    return KeyAdmin(stores.keys, stores.audit, stores.budgets, stores.ledger, clock=now_utc)


def _scope(
    models: list[str],
    max_quality: str | None,
    max_n: int | None,
    rpm: int | None,
    budget: str | None,
    period: str,
) -> KeyScope:
    if max_quality is not None and max_quality not in QUALITY_RANK:
        raise InvalidRequest.for_field("--max-quality", max_quality, "one of " + ", ".join(QUALITY_RANK))
    try:
        budget_period = Period(period)
    except ValueError:
        raise InvalidRequest.for_field("--period", period, "one of day, week, month, total") from None
    for option, value in (("--max-n", max_n), ("--rpm", rpm)):
        if value is not None and value < 1:
            raise InvalidRequest.for_field(option, value, "a whole number >= 1")
    return KeyScope(
        models=_names(models),
        max_quality=max_quality,
        max_n=max_n,
        rpm=rpm,
        budget_usd=None if budget is None else parse_usd("--budget-usd", budget),
        budget_period=budget_period,
    )


def _names(models: list[str]) -> tuple[str, ...]:
    return tuple(m.strip() for item in models for m in item.split(",") if m.strip())


def _check_models(names: tuple[str, ...], config: Path | None) -> None:
    """Refuse a model the gateway's configuration does not serve, when the CLI knows it."""
    if not names:
        return
    try:
        gateway = load(config, os.environ)
    except ConfigError as exc:
        if config is not None:  # asked for by name: its problems are the error
            raise
        where = f" ({exc.source})" if exc.source else ""
        problems = "; ".join(exc.problems)
        err_console.print(
            f"[yellow]note[/]: --models not checked: the configuration{escape(where)} could not be "
            f"loaded here: {escape(problems)}"
        )
        return
    if gateway.source is None:
        err_console.print(
            "[yellow]note[/]: --models not checked against the gateway's models: no configuration "
            "(give --config, or set IMAGEGATE_CONFIG)"
        )
        return
    check_models(names, (*gateway.model_names(), gateway.default_model), field="--models")


@app.command()
def create(
    name: str = typer.Option(..., "--name", help="A label for the key, e.g. team-a."),
    models: list[str] = typer.Option(
        [], "--models", help="Allowed logical models (repeat or comma-separate; default all)."
    ),
    max_quality: str | None = typer.Option(
        None, "--max-quality", help="Highest quality allowed (low, medium, high, standard, hd)."
    ),
    max_n: int | None = typer.Option(None, "--max-n", help="Most images per request."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    budget_usd: str | None = typer.Option(None, "--budget-usd", help="USD budget per --period."),
    period: str = typer.Option("month", "--period", help="Budget period: day, week, month or total."),
    database_url: str | None = database_option,
    key_pepper: str | None = pepper_option,
    config: Path | None = config_option,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a key. Its value is printed once and cannot be shown again."""
    with fail_on_errors():
        scope = _scope(models, max_quality, max_n, rpm, budget_usd, period)
        _check_models(scope.models, config)

        async def run() -> tuple[str, str, str]:
            async with open_database(database_url, key_pepper) as stores:
                new = await _admin(stores).create(name, scope, actor=ACTOR)
                return new.plaintext, new.record.id, new.record.prefix

        plaintext, key_id, _prefix = asyncio.run(run())
        if as_json:
            typer.echo(orjson.dumps({"id": key_id, "name": name, "key": plaintext}).decode())
        else:
            typer.echo(plaintext)
        err_console.print(
            f"created key [bold]{key_id}[/] ({name}). [yellow]This is the only time the key is shown: "
            "store it now.[/]"
        )


def _row(view: KeyView, now: datetime) -> dict[str, str | int | None]:
    r, s = view.record, view.record.scope
    status = "revoked" if r.revoked_at else ("expired" if r.expires_at and r.expires_at <= now else "active")
    budget = None if s.budget_usd is None else f"${s.budget_usd}/{s.budget_period.value}"
    spent = (
        None if view.usage is None else f"${view.usage.spent_usd:.4f} (+${view.usage.reserved_usd:.4f} held)"
    )
    return {
        "id": r.id,
        "name": r.name,
        "prefix": r.prefix + "…",
        "status": status,
        "models": ",".join(s.models) or "*",
        "max_quality": s.max_quality,
        "max_n": s.max_n,
        "rpm": s.rpm,
        "budget": budget,
        "spent": spent,
        "created": r.created_at.isoformat(timespec="seconds"),
    }


@app.command("list")
def list_keys(
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    database_url: str | None = database_option,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List keys (never their values): id, prefix, scope, budget and spend this period."""
    with fail_on_errors():

        async def run() -> list[KeyView]:
            async with open_database(database_url) as stores:
                return await _admin(stores).list(include_revoked=include_revoked)

        views = asyncio.run(run())
        now = now_utc()
        rows = [_row(v, now) for v in views]
        if as_json:
            typer.echo(orjson.dumps(rows).decode())
            return
        if not rows:
            err_console.print("no keys (create one with: imagegate keys create --name NAME)")
            return
        from rich.table import Table

        table = Table(*rows[0].keys())
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        out_console().print(table)


@app.command()
def update(
    key: str = typer.Argument(..., help="Key id (key_...) or the name of exactly one active key."),
    models: list[str] | None = typer.Option(None, "--models", help="Allowed logical models ('*' for all)."),
    max_quality: str | None = typer.Option(None, "--max-quality", help="Highest quality ('none' to lift)."),
    max_n: int | None = typer.Option(None, "--max-n", help="Most images per request (0 to lift)."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute (0 to lift)."),
    budget_usd: str | None = typer.Option(
        None, "--budget-usd", help="USD budget per period ('none' to lift)."
    ),
    period: str | None = typer.Option(None, "--period", help="Budget period: day, week, month or total."),
    database_url: str | None = database_option,
    config: Path | None = config_option,
) -> None:
    """Change a key's scope or budget; unspecified settings stay as they are."""
    with fail_on_errors():
        if models is not None and models != ["*"]:
            _check_models(_names(models), config)

        async def run() -> tuple[str, KeyScope]:
            async with open_database(database_url) as stores:
                admin = _admin(stores)
                old = (await admin.resolve(key)).scope
                scope = _scope(
                    old_models(old) if models is None else ([] if models == ["*"] else models),
                    old.max_quality
                    if max_quality is None
                    else (None if max_quality == "none" else max_quality),
                    old.max_n if max_n is None else (max_n or None),
                    old.rpm if rpm is None else (rpm or None),
                    (None if old.budget_usd is None else str(old.budget_usd))
                    if budget_usd is None
                    else (None if budget_usd == "none" else budget_usd),
                    old.budget_period.value if period is None else period,
                )
                record = await admin.set_scope(key, scope, actor=ACTOR)
                return record.id, record.scope

        key_id, scope = asyncio.run(run())
        budget = "none" if scope.budget_usd is None else f"${scope.budget_usd}/{scope.budget_period.value}"
        err_console.print(
            f"updated key [bold]{key_id}[/]: rpm={scope.rpm}, max_n={scope.max_n}, budget={budget}"
        )


def old_models(scope: KeyScope) -> list[str]:
    return list(scope.models)


@app.command()
def revoke(
    key: str = typer.Argument(..., help="Key id (key_...) or the name of exactly one active key."),
    database_url: str | None = database_option,
) -> None:
    """Revoke a key: requests with it fail with 401 from now on."""
    with fail_on_errors():

        async def run() -> tuple[str, str]:
            async with open_database(database_url) as stores:
                record = await _admin(stores).revoke(key, actor=ACTOR)
                return record.id, record.name

        key_id, name = asyncio.run(run())
        err_console.print(f"revoked key [bold]{key_id}[/] ({name})")

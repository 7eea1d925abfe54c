"""``imagegate doctor``: check the configuration and that every deployment answers and accepts
our credentials, without generating (or paying for) an image.

How: each deployment gets a generation request that is invalid by design (an empty prompt).
Azure checks the key (401), then the deployment (404), then the api-version, before it reads the
body, so a 400 proves the endpoint, credentials, deployment and api-version are right, and no image
is ever generated, so nothing is billed. (It does count against the deployment's requests per
minute, like any request.) Then the routing status table (``cli/status_table.py``): breaker,
quota headroom and learnt latency per deployment.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from imagegate.cli.running import (
    config_option,
    err_console,
    fail_on_errors,
    open_gate,
    out_console,
    run_waiting,
)
from imagegate.cli.status_table import status_table
from imagegate.routing import DeploymentView
from imagegate.upstream.client import ProbeResult


def doctor(config: Path | None = config_option) -> None:
    """Check configuration and every deployment (free: no image is generated)."""
    with fail_on_errors():
        gate = open_gate(config)
        source = "built-in emulator" if gate.config.emulated else gate.config.source
        err_console.print(f"configuration: ok ({len(gate.config.deployments)} deployment(s) from {source})")

        async def call() -> tuple[list[ProbeResult], tuple[DeploymentView, ...]]:
            async with gate:
                return await gate.doctor(), await gate.status()

        results, views = run_waiting("probing deployments", call)
    table = Table(title="deployments")
    for column in ("", "deployment", "model", "region", "status", "detail", "time"):
        table.add_column(column)
    for r in results:
        dep = gate.config.deployment(r.deployment)
        mark = "[green]ok[/]" if r.ok else "[red]FAIL[/]"
        table.add_row(
            mark,
            r.deployment,
            dep.model,
            dep.region or "-",
            str(r.status_code or "-"),
            r.detail,
            f"{r.latency_s:.2f}s",
        )
    out_console().print(table)
    out_console().print(status_table(views))
    failed = [r for r in results if not r.ok]
    if failed:
        err_console.print(f"[red]{len(failed)} deployment(s) failed[/]")
        raise typer.Exit(1)

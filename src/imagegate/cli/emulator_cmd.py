"""``imagegate emulator``: run the Azure OpenAI image emulator under uvicorn and say how to call it.

As ``imagegate serve`` (``cli.listen``): the port is bound before anything is announced (a taken
one is one ``error:`` line and exit code 1), and the banner is printed once the emulator listens.
"""

from __future__ import annotations

from pathlib import Path

import typer

from imagegate.emulator import EmulatorConfigError, create_emulator_app, load_emulator_config
from imagegate.emulator.banner import describe


def emulator(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file of deployments (default: built-in)."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8081, min=1, max=65535, help="Port to listen on."),
    time_scale: float | None = typer.Option(
        None, "--time-scale", min=0.0, help="Multiply emulated latencies (0 = instant; default: config, 1.0)."
    ),
) -> None:
    """Run the Azure OpenAI image emulator (routes, auth, quotas, latency, faults)."""
    import uvicorn

    from imagegate.cli import listen

    try:
        cfg = load_emulator_config(config)
    except EmulatorConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    app = create_emulator_app(cfg, time_scale=time_scale)
    scale = app.state.emulator.time_scale
    shown = f"[{host}]" if ":" in host else host
    banner = describe(cfg, f"http://{shown}:{port}", scale)
    with listen.bind_socket(host, port) as sock:
        listen.run_announced(uvicorn.Config(app, log_level="warning"), sock, banner)

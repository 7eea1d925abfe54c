"""``imagegate emulator``: run the Azure OpenAI image emulator under uvicorn and say how to call it."""

from __future__ import annotations

from pathlib import Path

import typer

from imagegate.emulator import EmulatorConfig, EmulatorConfigError, create_emulator_app, load_emulator_config


def describe(config: EmulatorConfig, base_url: str, time_scale: float) -> str:
    """The start-up banner: deployments, the demo key, and an example call."""
    lines = [f"Azure OpenAI image emulator on {base_url} (time scale {time_scale:g}; 0 = no latency)", ""]
    lines.append(
        f"  {'deployment':<20} {'model':<18} {'region':<14} {'rpm':>5} {'window':>7} {'conc':>5}  auth"
    )
    for dep in config.deployments:
        auth = "api-key" + (" + Entra bearer" if dep.entra else "")
        lines.append(
            f"  {dep.name:<20} {dep.model:<18} {dep.region:<14} {dep.rpm:>5} {dep.window_s:>6}s "
            f"{dep.concurrency:>5}  {auth}"
        )
    first = next((d for d in config.deployments if d.model.startswith("gpt-image")), config.deployments[0])
    key = first.api_keys[0] if first.api_keys else "<key>"
    lines += [
        "",
        f"  api key: {key}  (a documented demo value, not a secret)",
        "  admin:   GET /_emulator/deployments   PUT /_emulator/deployments/{name}/faults"
        "   POST /_emulator/reset",
        "",
        "  example:",
        f"    curl -s '{base_url}/openai/deployments/{first.name}/images/generations"
        "?api-version=2025-04-01-preview' \\",
        f"      -H 'api-key: {key}' -H 'content-type: application/json' \\",
        """      -d '{"prompt": "a red fox in the snow", "size": "1024x1024", "quality": "low"}'""",
        "",
        "    from openai import AzureOpenAI",
        f'    client = AzureOpenAI(azure_endpoint="{base_url}", api_key="{key}",',
        '                         api_version="2025-04-01-preview")',
        f'    client.images.generate(model="{first.name}", prompt="a red fox")',
    ]
    return "\n".join(lines)


def emulator(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file of deployments (default: built-in)."
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8081, help="Port to listen on."),
    time_scale: float | None = typer.Option(
        None, "--time-scale", min=0.0, help="Multiply emulated latencies (0 = instant; default: config, 1.0)."
    ),
) -> None:
    """Run the Azure OpenAI image emulator (routes, auth, quotas, latency, faults)."""
    import uvicorn

    try:
        cfg = load_emulator_config(config)
    except EmulatorConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    app = create_emulator_app(cfg, time_scale=time_scale)
    scale = app.state.emulator.time_scale
    typer.echo(describe(cfg, f"http://{host}:{port}", scale))
    uvicorn.run(app, host=host, port=port, log_level="warning")

"""The start-up banner of ``imagegate emulator``: deployments, the demo key and an example call.
It lives here, not in the CLI, because it names models and the CLI stays model-agnostic."""

from __future__ import annotations

from imagegate.emulator.config import DEMO_API_KEY, EmulatorConfig


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
    # Only the documented demo key is ever printed; configured keys are secrets.
    demo = DEMO_API_KEY in first.api_keys
    key = DEMO_API_KEY if demo else "<your configured key>"
    lines += [
        "",
        f"  api key: {key}" + ("  (a documented demo value, not a secret)" if demo else ""),
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

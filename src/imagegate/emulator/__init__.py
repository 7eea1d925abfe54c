"""A faithful local emulator of Azure OpenAI's image endpoints (and enough chat for a prompt
rewrite), with quotas, latency, content filtering and scripted faults.

It imports nothing from the rest of imagegate, by design: a shared schema bug must not pass in
both places. See docs/emulator.md for the protocol choices it makes.
"""

from __future__ import annotations

from imagegate.emulator.app import create_emulator_app
from imagegate.emulator.config import (
    DEMO_API_KEY,
    DeploymentSpec,
    EmulatorConfig,
    EmulatorConfigError,
    FaultSpec,
    default_emulator_config,
    load_emulator_config,
)

__all__ = [
    "DEMO_API_KEY",
    "DeploymentSpec",
    "EmulatorConfig",
    "EmulatorConfigError",
    "FaultSpec",
    "create_emulator_app",
    "default_emulator_config",
    "load_emulator_config",
]

"""The admin API under ``/_emulator/`` (no auth: the emulator is a local tool). JSON shapes are in
docs/emulator.md.

- ``GET /_emulator/deployments`` -> ``{"time_scale", "deployments": [<deployment>...]}``
- ``GET /_emulator/deployments/{name}`` -> ``<deployment>`` (config without keys, quota state,
  fault script with how often each rule fired, counters)
- ``PUT /_emulator/deployments/{name}/faults`` with ``[<fault>...]`` or ``{"faults": [...]}`` ->
  replaces the script (its clock starts now); 400 lists every problem
- ``POST /_emulator/reset`` -> zeroes counters and quota windows
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from imagegate.emulator.config import FaultSpec, problems_from
from imagegate.emulator.state import EmulatorState

_FAULTS = TypeAdapter(tuple[FaultSpec, ...])


def _not_found(name: str) -> Response:
    return JSONResponse(
        {"error": {"code": "DeploymentNotFound", "message": f"No deployment named {name!r}."}}, 404
    )


async def list_deployments(state: EmulatorState, request: Request) -> Response:
    return JSONResponse(
        {
            "time_scale": state.time_scale,
            "deployments": [state.describe(d) for d in state.deployments.values()],
        }
    )


async def get_deployment(state: EmulatorState, request: Request) -> Response:
    name = request.path_params["name"]
    dep = state.deployments.get(name)
    return _not_found(name) if dep is None else JSONResponse(state.describe(dep))


async def put_faults(state: EmulatorState, request: Request) -> Response:
    name = request.path_params["name"]
    if name not in state.deployments:
        return _not_found(name)
    try:
        raw: Any = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _invalid(["<body>: not valid JSON"])
    if isinstance(raw, dict) and "faults" in raw:
        raw = raw["faults"]
    try:
        specs = _FAULTS.validate_python(raw)
    except ValidationError as exc:
        return _invalid([f"faults{p}" if p.startswith("[") else f"faults.{p}" for p in problems_from(exc)])
    state.set_faults(name, specs)
    return JSONResponse(state.describe(state.deployments[name]))


def _invalid(problems: list[str]) -> Response:
    return JSONResponse(
        {
            "error": {
                "code": "InvalidFaults",
                "message": f"{len(problems)} problem(s) in the fault script",
                "problems": problems,
            }
        },
        400,
    )


async def reset(state: EmulatorState, request: Request) -> Response:
    state.reset()
    return JSONResponse({"reset": True})

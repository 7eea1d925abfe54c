"""The emulator's configuration: one YAML file of deployments, parsed with pydantic into frozen
objects, or the built-in defaults when there is no file.

A bad file raises one :class:`EmulatorConfigError` listing every problem (path, value, what is
allowed), because fixing a config one error per run is miserable. The emulator does not use
imagegate's ``ConfigError``: it imports nothing from the gateway, so it carries its own.

Default deployments (names are the deployment names in URLs; api key ``emulator-key`` is a
documented demo value, not a secret): gpt-image-1 (eastus2), gpt-image-1-swc (gpt-image-1,
swedencentral; also accepts any Entra ID bearer token, ``entra: true``), gpt-image-1-mini
(eastus2), gpt-image-2 (eastus2), dall-e-3 (eastus), gpt-4o (chat, eastus2). Each gets 60 rpm over
10 s windows (10 requests per window) and 4 concurrent requests: Azure's real defaults (6-9 rpm)
would 429 a demo test suite, so these are "tier 6"-ish numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imagegate.emulator.models import KNOWN_API_VERSIONS, MODELS

DEMO_API_KEY = "emulator-key"

Category = Literal["hate", "sexual", "violence", "self_harm"]
Severity = Literal["low", "medium", "high"]
RouteName = Literal["generations", "edits", "chat"]
FaultKind = Literal[
    "status",
    "outage",
    "hang",
    "slow_body",
    "drop_mid_body",
    "malformed_json",
    "stream_error",
    "usage_missing",
    "retry_after_missing",
]


class EmulatorConfigError(ValueError):
    """A configuration file (or admin PUT body) with problems; ``problems`` lists all of them."""

    def __init__(self, problems: list[str], *, source: str = "<config>") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} emulator configuration problem(s) in {source}:\n{lines}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencySpec(_Frozen):
    """Lognormal latency per request. ``median_s=None`` means the model default (gpt-image:
    3 s + output tokens/200; dall-e-3: 8 s standard, 12 s hd; dall-e-2: 4 s; chat: 0.8 s);
    ``p95_s=None`` means 1.6 x median. The time scale multiplies the sample."""

    median_s: float | None = Field(default=None, ge=0)
    p95_s: float | None = Field(default=None, ge=0)
    distribution: Literal["lognormal", "fixed"] = "lognormal"


class FaultSpec(_Frozen):
    """One scripted fault. It applies to a request when it is active (``start_s``/``duration_s``
    after the script was installed), the route matches, ``count`` is not used up, and a draw
    under ``probability`` succeeds (seeded, so runs repeat)."""

    kind: FaultKind
    status: int = Field(default=500, ge=400, le=599)
    mode: Literal["refuse", "503"] = "refuse"
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    count: int | None = Field(default=None, ge=1)
    start_s: float = Field(default=0.0, ge=0.0)
    duration_s: float | None = Field(default=None, gt=0.0)
    retry_after_s: int = Field(default=1, ge=0)
    delay_s: float = Field(default=30.0, ge=0.0)
    phase: Literal["before", "after"] = "after"
    routes: tuple[RouteName, ...] | None = None


class BlockTerm(_Frozen):
    """A blocklist term (case-insensitive, whole words). ``stage=prompt`` rejects the prompt;
    ``stage=output`` lets the prompt through and rejects the generated image."""

    term: str = Field(min_length=1)
    category: Category
    severity: Severity = "high"
    stage: Literal["prompt", "output"] = "prompt"


DEFAULT_BLOCKLIST: tuple[BlockTerm, ...] = (
    BlockTerm(term="massacre", category="violence", severity="high"),
    BlockTerm(term="beheading", category="violence", severity="high"),
    BlockTerm(term="genocide", category="hate", severity="high"),
    BlockTerm(term="racial slur", category="hate", severity="medium"),
    BlockTerm(term="nude", category="sexual", severity="medium"),
    BlockTerm(term="explicit sex", category="sexual", severity="high"),
    BlockTerm(term="suicide", category="self_harm", severity="medium"),
    BlockTerm(term="self-harm", category="self_harm", severity="high"),
    BlockTerm(term="bloodbath", category="violence", severity="medium", stage="output"),
    BlockTerm(term="gore", category="violence", severity="medium", stage="output"),
)


class DeploymentSpec(_Frozen):
    """One emulated deployment. ``api_versions=None`` means the versions that serve the model
    (models.py); ``blocklist=None`` means DEFAULT_BLOCKLIST, ``[]`` means none."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str
    region: str = "eastus2"
    rpm: int = Field(default=60, ge=1)
    window_s: Literal[1, 10] = 10
    concurrency: int = Field(default=4, ge=1)
    api_keys: tuple[str, ...] = Field(default=(DEMO_API_KEY,), repr=False)
    entra: bool = False
    latency: LatencySpec = LatencySpec()
    faults: tuple[FaultSpec, ...] = ()
    blocklist: tuple[BlockTerm, ...] | None = None
    api_versions: tuple[str, ...] | None = None
    image_bytes: Literal["realistic", "small"] = "realistic"
    content_filter_style: Literal["auto", "azure", "moderation"] = "auto"

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"unknown model; allowed: {', '.join(sorted(MODELS))}")
        return value

    @field_validator("api_versions")
    @classmethod
    def _known_versions(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            bad = [v for v in value if v not in KNOWN_API_VERSIONS]
            if bad:
                raise ValueError(f"unknown api-version(s) {bad}; allowed: {', '.join(KNOWN_API_VERSIONS)}")
        return value

    @property
    def terms(self) -> tuple[BlockTerm, ...]:
        return DEFAULT_BLOCKLIST if self.blocklist is None else self.blocklist

    @property
    def per_window(self) -> int:
        """Requests allowed per window: rpm/60*window_s, at least 1 (§8.1)."""
        return max(1, int(self.rpm * self.window_s / 60))


class EmulatorConfig(_Frozen):
    """All deployments plus global knobs. ``time_scale`` multiplies sampled latencies only."""

    deployments: tuple[DeploymentSpec, ...]
    time_scale: float = Field(default=1.0, ge=0.0)
    seed: int = 0
    cache_mb: int = Field(default=256, ge=0)
    url_ttl_s: float = Field(default=86400.0, gt=0.0)

    def deployment(self, name: str) -> DeploymentSpec | None:
        for dep in self.deployments:
            if dep.name == name:
                return dep
        return None


def default_emulator_config() -> EmulatorConfig:
    """The six default deployments described in the module docstring."""
    deps = (
        DeploymentSpec(name="gpt-image-1", model="gpt-image-1", region="eastus2"),
        DeploymentSpec(name="gpt-image-1-swc", model="gpt-image-1", region="swedencentral", entra=True),
        DeploymentSpec(name="gpt-image-1-mini", model="gpt-image-1-mini", region="eastus2"),
        DeploymentSpec(name="gpt-image-2", model="gpt-image-2", region="eastus2"),
        DeploymentSpec(name="dall-e-3", model="dall-e-3", region="eastus"),
        DeploymentSpec(name="gpt-4o", model="gpt-4o", region="eastus2"),
    )
    return EmulatorConfig(deployments=deps)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def problems_from(exc: ValidationError) -> list[str]:
    """Pydantic errors as 'path: value (what is allowed)' lines."""
    lines = []
    for err in exc.errors(include_url=False):
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        if _loc(err["loc"]).endswith("api_keys") or "api_keys[" in _loc(err["loc"]):
            shown = "<hidden>"
        lines.append(f"{_loc(err['loc'])}: {shown}: {err['msg']}")
    return lines


def _duplicate_names(raw: Any) -> list[str]:
    if not isinstance(raw, dict) or not isinstance(raw.get("deployments"), list):
        return []
    seen: set[str] = set()
    problems = []
    for i, dep in enumerate(raw["deployments"]):
        name = dep.get("name") if isinstance(dep, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(f"deployments[{i}].name: {name!r}: duplicate deployment name")
            seen.add(name)
    return problems


def parse_emulator_config(raw: Any, *, source: str = "<config>") -> EmulatorConfig:
    """Validate already-parsed YAML/JSON data; raise EmulatorConfigError listing every problem."""
    problems = _duplicate_names(raw)
    try:
        config = EmulatorConfig.model_validate(raw)
    except ValidationError as exc:
        raise EmulatorConfigError(problems_from(exc) + problems, source=source) from None
    if problems:
        raise EmulatorConfigError(problems, source=source)
    return config


def load_emulator_config(path: str | Path | None = None) -> EmulatorConfig:
    """Read a YAML file of deployments; with no path, the defaults."""
    if path is None:
        return default_emulator_config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise EmulatorConfigError([f"{p}: cannot read file: {exc.strerror}"], source=str(p)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EmulatorConfigError([f"{p}: not valid YAML: {exc}"], source=str(p)) from None
    if raw is None:
        raw = {}
    if isinstance(raw, dict) and "deployments" not in raw:
        raise EmulatorConfigError(["deployments: missing: a list of deployments is required"], source=str(p))
    return parse_emulator_config(raw, source=str(p))

"""Frozen configuration objects. Built once by ``config_load.load``; never mutated, never read
from the environment afterwards.

=====================  ==========================================================================
object                 what it configures
=====================  ==========================================================================
``ImageGateConfig``    the whole thing: deployments, logical model groups, retry, defaults
``DeploymentConfig``   one upstream deployment (Azure resource + deployment, or OpenAI platform)
``ApiKeyAuth``         key auth: ``api-key`` header (Azure) or ``Authorization: Bearer`` (OpenAI)
``EntraAuth``          Microsoft Entra ID token from azure-identity (scope cognitiveservices)
``TimeoutConfig``      per-deployment timeouts; ``read_s=None`` means "per model and quality from
                       the catalog", which is long enough for high quality
``RetryConfig``        the attempt loop: attempts, backoff, retry-after cap, deadline
``PriceOverride``      a deployment's negotiated prices instead of the catalog's list prices
``GroupRouting``       how a logical model group routes: strategy, region allow-list, fallbacks
``BreakerSettings``    the per-deployment circuit breaker's tuning (``policy.breaker``)
``RoutingStateSettings``  where routing state lives: this process (memory) or shared Redis
=====================  ==========================================================================

Durations carry their unit in the name (``connect_s``). Secrets are ``Secret`` values whose repr
is masked, so a config can be printed or logged safely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal

from imagegate.errors import InvalidRequest, NotFound

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_RETRY",
    "ENTRA_SCOPE",
    "ApiKeyAuth",
    "Auth",
    "BreakerSettings",
    "DeploymentConfig",
    "EntraAuth",
    "GroupRouting",
    "ImageGateConfig",
    "PriceOverride",
    "RetryConfig",
    "RoutingStateSettings",
    "Secret",
    "TimeoutConfig",
]

ENTRA_SCOPE: Final = "https://cognitiveservices.azure.com/.default"
DEFAULT_CONNECT_TIMEOUT_S: Final = 5.0
DEFAULT_WRITE_TIMEOUT_S: Final = 60.0
DEFAULT_POOL_TIMEOUT_S: Final = 10.0
DEFAULT_OPENAI_ENDPOINT: Final = "https://api.openai.com"
DEFAULT_GROUP: Final = "default"
DEFAULT_RPM_WINDOW_S: Final = 10.0
ROUTING_STRATEGIES: Final = ("priority", "weighted", "least_latency", "lowest_cost", "most_headroom")


class Secret:
    """A string that never shows itself: ``repr``/``str`` are masked; use ``reveal()`` at the
    one place the value goes on the wire."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyAuth:
    key: Secret = field(repr=False)
    type: Literal["api_key"] = "api_key"


@dataclass(frozen=True, slots=True, kw_only=True)
class EntraAuth:
    """Entra ID via azure-identity. ``client_id`` picks a user-assigned managed identity;
    ``None`` lets DefaultAzureCredential choose (env, workload identity, CLI, ...)."""

    client_id: str | None = None
    tenant_id: str | None = None
    scope: str = ENTRA_SCOPE
    refresh_margin_s: float = 300.0
    type: Literal["entra"] = "entra"


Auth = ApiKeyAuth | EntraAuth


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutConfig:
    """``read_s=None``: use the catalog's read timeout for the model and quality."""

    connect_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_s: float | None = None
    write_s: float = DEFAULT_WRITE_TIMEOUT_S
    pool_s: float = DEFAULT_POOL_TIMEOUT_S


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceOverride:
    """Prices that replace the catalog's for one deployment (fields left ``None`` keep the
    catalog value). Token prices per 1M tokens; ``per_image_usd`` is a flat price per image."""

    text_input_per_1m: Decimal | None = None
    image_input_per_1m: Decimal | None = None
    image_output_per_1m: Decimal | None = None
    per_image_usd: Decimal | None = None
    source: str = "price_override in configuration"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentConfig:
    """One upstream deployment.

    ``name`` is imagegate's name for it (unique); ``deployment`` is the upstream deployment id in
    the URL (Azure) or body ``model`` (Azure v1 route), defaulting to ``name``. ``model`` is the
    catalog model it serves. ``kind`` picks the protocol: ``azure`` (``api-key`` or Entra, routes
    ``deployments`` or ``v1``) or ``openai`` (the OpenAI platform, Bearer key, ``/v1/images``).
    ``rpm``, ``concurrency``, ``priority`` and ``weight`` are for routing; ``tags`` are free-form.
    ``rpm_window_s`` is the window Azure judges ``rpm`` over (1 or 10 s; see ``policy.quota``).
    """

    name: str
    kind: Literal["azure", "openai"] = "azure"
    endpoint: str
    model: str
    deployment: str | None = None
    region: str | None = None
    auth: Auth = field(repr=False)
    api_version: str | None = None
    route: Literal["deployments", "v1"] = "deployments"
    rpm: int | None = None
    concurrency: int | None = None
    rpm_window_s: float = DEFAULT_RPM_WINDOW_S
    priority: int = 0
    weight: float = 1.0
    price_override: PriceOverride | None = None
    tags: tuple[str, ...] = ()
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)

    @property
    def upstream_name(self) -> str:
        return self.deployment or self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """The attempt loop (``upstream/client.py``), decided by ``policy/retry.py``.

    Backoff is "full jitter": ``delay = rand() * min(max_backoff_s, initial_backoff_s * 2**(k-1))``
    before retry ``k``. A ``retry-after`` from upstream replaces the backoff when it is at most
    ``max_retry_after_s``; a longer one ends the loop (waiting a day helps nobody). Failing over to
    another deployment counts as an attempt. ``deadline_s`` bounds the whole request.
    ``retry_sent_timeouts``: a read timeout after sending may have been billed; resend only if True.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 120.0
    deadline_s: float = 900.0
    retry_sent_timeouts: bool = False
    retry_statuses: tuple[int, ...] = (408, 409, 429, 500, 502, 503, 504)


DEFAULT_RETRY: Final = RetryConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSettings:
    """``breaker:`` in the file; see ``policy.breaker.BreakerConfig`` for what each does."""

    window_s: float = 30.0
    min_requests: int = 4
    failure_rate: float = 0.5
    consecutive_failures: int = 3
    cooldown_s: float = 5.0
    max_cooldown_s: float = 300.0
    cooldown_on_429: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingStateSettings:
    """``routing_state:`` in the file: where breakers, quota windows and latency live.

    ``memory`` (default): per process. ``redis``: shared by every worker and replica using the same
    ``url`` and ``prefix`` (``routing.redis_state``); ``url`` defaults to ``IMAGEGATE_REDIS_URL``.
    """

    backend: Literal["memory", "redis"] = "memory"
    url: str | None = field(default=None, repr=False)
    prefix: str = "imagegate:routing"
    ttl_s: float = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRouting:
    """Routing for one logical model (``routing.<group>`` in the file).

    ``strategy`` is one of ``ROUTING_STRATEGIES`` (see ``policy.routing``); ``regions`` is a data
    residency allow-list (``None``: any region); ``fallbacks`` names what is tried, in order,
    when none of this group's deployments can serve: other logical models, deployment names or
    catalog models (``policy.fallback`` translates the request for each; per request
    ``fallback="any" | "same-model" | "none"`` narrows it).
    """

    strategy: str = "priority"
    regions: tuple[str, ...] | None = None
    required_tags: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageGateConfig:
    """Everything imagegate needs to run. ``models`` maps logical model names (``default``,
    ``cheap``, ...) to deployment names in preference order. ``emulated`` says the deployments
    are the built-in in-process emulator (zero-config mode); ``emulator_time_scale`` then scales
    its (realistic) latencies, so a demo of a high-quality image takes seconds, not half a minute."""

    deployments: tuple[DeploymentConfig, ...]
    models: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    default_model: str = DEFAULT_GROUP
    retry: RetryConfig = DEFAULT_RETRY
    routing: Mapping[str, GroupRouting] = field(default_factory=lambda: MappingProxyType({}))
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    routing_state: RoutingStateSettings = field(default_factory=RoutingStateSettings)
    translate: bool = False
    emulated: bool = False
    emulator_time_scale: float = 0.25
    source: str | None = None
    warnings: tuple[str, ...] = ()

    def deployment(self, name: str) -> DeploymentConfig:
        for dep in self.deployments:
            if dep.name == name:
                return dep
        raise NotFound(f"no deployment named {name!r}")

    def model_names(self) -> tuple[str, ...]:
        """Every name a caller may pass as ``model``: logical groups first, then deployment
        names, then the catalog models the deployments serve (``deployments_for`` order)."""
        names = dict.fromkeys(self.models)
        names.update(dict.fromkeys(d.name for d in self.deployments))
        names.update(dict.fromkeys(d.model for d in self.deployments))
        return tuple(names)

    def deployments_for(self, model: str | None) -> tuple[DeploymentConfig, ...]:
        """Resolve what a caller asked for into candidate deployments, in preference order.

        ``model`` may be a logical group (``models:`` in the config), a deployment name, or a
        catalog model name (every deployment serving it). ``None`` means ``default_model``, or
        every deployment when no such group exists.
        """
        wanted = self.default_model if model is None else model
        if wanted in self.models:
            return tuple(self.deployment(n) for n in self.models[wanted])
        by_name = [d for d in self.deployments if d.name == wanted]
        if by_name:
            return tuple(by_name)
        serving = tuple(d for d in self.deployments if d.model == wanted)
        if serving:
            return serving
        if model is None:
            return self.deployments
        choices = sorted(
            {*self.models, *(d.name for d in self.deployments), *(d.model for d in self.deployments)}
        )
        raise InvalidRequest.for_field("model", model, "one of " + ", ".join(choices))

"""The one place where configuration file, environment and defaults merge.

``load(path, environ)`` builds an ``ImageGateConfig`` once, at start-up. Precedence, highest first:

1. Environment overrides of scalar settings: ``IMAGEGATE_DEFAULT_MODEL``, ``IMAGEGATE_TRANSLATE``,
   ``IMAGEGATE_EMULATOR_TIME_SCALE``.
2. The YAML file: ``path``, else ``$IMAGEGATE_CONFIG`` when set. Secrets in it may be given as
   ``api_key_env: VAR`` (read from ``environ`` here, once) rather than literally.
3. When the file defines no deployments: one Azure deployment from the environment, if
   ``AZURE_OPENAI_ENDPOINT`` is set: ``AZURE_OPENAI_DEPLOYMENT`` (or ``IMAGEGATE_DEPLOYMENT``),
   ``AZURE_OPENAI_API_KEY`` (Entra ID via azure-identity when absent), ``AZURE_OPENAI_API_VERSION``
   (else the catalog's version for the model) and ``IMAGEGATE_MODEL`` (else the deployment name,
   when it names a catalog model).
4. Otherwise the built-in emulator's deployments (zero-config mode, ``emulated=True``; no
   retirement warnings, since nothing real is called).

Everything is validated here and every problem is reported at once in one ``ConfigError``.
Nothing else in imagegate reads ``os.environ``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from imagegate.catalog import Catalog, default_catalog, emulated_deployments_data
from imagegate.config import (
    DEFAULT_GROUP,
    DEFAULT_OPENAI_ENDPOINT,
    DEFAULT_RPM_WINDOW_S,
    ROUTING_STRATEGIES,
    ApiKeyAuth,
    Auth,
    BreakerSettings,
    DeploymentConfig,
    EntraAuth,
    GroupRouting,
    ImageGateConfig,
    PriceOverride,
    RetryConfig,
    RoutingStateSettings,
    Secret,
    TimeoutConfig,
)
from imagegate.errors import ConfigError

__all__ = ["load"]

_TOP_KEYS = {
    "deployments",
    "models",
    "default_model",
    "retry",
    "translate",
    "routing",
    "breaker",
    "routing_state",
}
_DEPLOYMENT_KEYS = {
    "name", "kind", "endpoint", "model", "deployment", "region", "auth", "api_key", "api_key_env",
    "api_version", "route", "rpm", "concurrency", "priority", "weight", "price_override", "tags",
    "timeouts", "rpm_window_s",
}  # fmt: skip
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _Problems:
    """Collects problems while reading, so the user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def number(self, raw: Mapping[str, Any], key: str, where: str, *, integer: bool = False) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or value <= 0:
            kind = "a positive integer" if integer else "a positive number"
            self.add(f"{where}.{key}", f"{value!r} is not {kind}")
            return None
        return value

    def string(
        self, raw: Mapping[str, Any], key: str, where: str, *, required: bool = False, secret: bool = False
    ) -> str | None:
        """``raw[key]`` as a non-empty string. ``secret``: a bad value is described by its type
        only (a key YAML read as a number or a list must not be echoed in an error)."""
        value = raw.get(key)
        if value is None:
            if required:
                self.add(f"{where}.{key}", "missing")
            return None
        if not isinstance(value, str) or not value:
            shown = f"a value of type {type(value).__name__} (not shown)" if secret else repr(value)
            self.add(f"{where}.{key}", f"{shown} is not a non-empty string")
            return None
        return value

    def unknown_keys(self, raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(raw) - allowed):
            self.add(f"{where}.{key}", f"unknown setting (allowed: {', '.join(sorted(allowed))})")


def _auth(raw: Mapping[str, Any], where: str, environ: Mapping[str, str], p: _Problems) -> Auth | None:
    spec = raw.get("auth")
    if isinstance(spec, Mapping) and spec.get("type") == "entra":
        p.unknown_keys(spec, {"type", "client_id", "tenant_id", "scope", "refresh_margin_s"}, f"{where}.auth")
        return EntraAuth(
            client_id=p.string(spec, "client_id", f"{where}.auth"),
            tenant_id=p.string(spec, "tenant_id", f"{where}.auth"),
            **({"scope": spec["scope"]} if isinstance(spec.get("scope"), str) else {}),
        )
    if spec not in (None, "api_key") and not (isinstance(spec, Mapping) and spec.get("type") == "api_key"):
        p.add(f"{where}.auth", "must be {type: entra, ...} or omitted (api_key / api_key_env)")
        return None
    literal = p.string(raw, "api_key", where, secret=True)
    env_name = p.string(raw, "api_key_env", where)
    if literal and env_name:
        p.add(where, "give api_key or api_key_env, not both")
    if env_name:
        if not environ.get(env_name):
            p.add(f"{where}.api_key_env", f"environment variable {env_name} is not set")
            return None
        return ApiKeyAuth(key=Secret(environ[env_name]))
    if literal:
        return ApiKeyAuth(key=Secret(literal))
    p.add(where, "no credentials: set api_key_env (or api_key), or auth: {type: entra}")
    return None


def _price_override(raw: Any, where: str, p: _Problems) -> PriceOverride | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        p.add(where, "must be a mapping of price fields")
        return None
    fields = {"text_input_per_1m", "image_input_per_1m", "image_output_per_1m", "per_image_usd", "source"}
    p.unknown_keys(raw, fields, where)
    values: dict[str, Any] = {}
    for key in fields - {"source"}:
        if key in raw:
            try:
                values[key] = Decimal(str(raw[key]))
            except InvalidOperation:
                p.add(f"{where}.{key}", f"{raw[key]!r} is not a decimal number")
    if isinstance(raw.get("source"), str):
        values["source"] = raw["source"]
    return PriceOverride(**values)


def _timeouts(raw: Any, where: str, p: _Problems) -> TimeoutConfig:
    if raw is None:
        return TimeoutConfig()
    if not isinstance(raw, Mapping):
        p.add(where, "must be a mapping (connect_s, read_s, write_s, pool_s)")
        return TimeoutConfig()
    keys = {"connect_s", "read_s", "write_s", "pool_s"}
    p.unknown_keys(raw, keys, where)
    given = {k: p.number(raw, k, where) for k in keys}
    return TimeoutConfig(**{k: float(v) for k, v in given.items() if v is not None})


def _deployment(
    raw: Any, index: int, environ: Mapping[str, str], catalog: Catalog, p: _Problems
) -> DeploymentConfig | None:
    where = f"deployments[{index}]"
    if not isinstance(raw, Mapping):
        p.add(where, "must be a mapping")
        return None
    p.unknown_keys(raw, _DEPLOYMENT_KEYS, where)
    name = p.string(raw, "name", where, required=True)
    where = f"deployments[{index}] ({name})" if name else where
    kind = raw.get("kind", "azure")
    if kind not in ("azure", "openai"):
        p.add(f"{where}.kind", f"{kind!r} is not one of azure, openai")
    route = raw.get("route", "deployments")
    if route not in ("deployments", "v1"):
        p.add(f"{where}.route", f"{route!r} is not one of deployments, v1")
    endpoint = p.string(raw, "endpoint", where, required=(kind == "azure"))
    endpoint = endpoint or DEFAULT_OPENAI_ENDPOINT
    if not endpoint.startswith(("http://", "https://")):
        p.add(f"{where}.endpoint", f"{endpoint!r} is not an http(s) URL")
    model = p.string(raw, "model", where, required=True)
    if model is not None and model not in catalog:
        p.add(f"{where}.model", f"{model!r} is not in the catalog ({', '.join(catalog.names())})")
    auth = _auth(raw, where, environ, p)
    if kind == "openai" and isinstance(auth, EntraAuth):
        p.add(f"{where}.auth", "the OpenAI platform takes an API key, not Entra ID")
    api_version = p.string(raw, "api_version", where)
    if api_version is None and kind == "azure" and route == "deployments" and model in catalog:
        api_version = catalog.get(model).azure_api_version if model else None
    tags = raw.get("tags", ())
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        p.add(f"{where}.tags", "must be a list of strings")
        tags = ()
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        p.add(f"{where}.priority", f"{priority!r} is not an integer")
        priority = 0
    # Read every field before giving up on the deployment, so all its problems are reported.
    deployment = p.string(raw, "deployment", where)
    region = p.string(raw, "region", where)
    rpm = p.number(raw, "rpm", where, integer=True)
    concurrency = p.number(raw, "concurrency", where, integer=True)
    rpm_window_s = float(p.number(raw, "rpm_window_s", where) or DEFAULT_RPM_WINDOW_S)
    weight = float(p.number(raw, "weight", where) or 1.0)
    price_override = _price_override(raw.get("price_override"), f"{where}.price_override", p)
    timeouts = _timeouts(raw.get("timeouts"), f"{where}.timeouts", p)
    if name is None or model is None or auth is None:
        return None
    return DeploymentConfig(
        name=name,
        kind=kind,
        endpoint=endpoint.rstrip("/"),
        model=model,
        deployment=deployment,
        region=region,
        auth=auth,
        api_version=api_version,
        route=route,
        rpm=rpm,
        concurrency=concurrency,
        rpm_window_s=rpm_window_s,
        priority=priority,
        weight=weight,
        price_override=price_override,
        tags=tuple(tags),
        timeouts=timeouts,
    )


def _retry(raw: Any, p: _Problems) -> RetryConfig:
    if raw is None:
        return RetryConfig()
    if not isinstance(raw, Mapping):
        p.add("retry", "must be a mapping")
        return RetryConfig()
    numbers = {"max_attempts", "initial_backoff_s", "max_backoff_s", "max_retry_after_s", "deadline_s"}
    p.unknown_keys(raw, numbers | {"retry_sent_timeouts", "retry_statuses"}, "retry")
    values: dict[str, Any] = {}
    for key in numbers:
        value = p.number(raw, key, "retry", integer=(key == "max_attempts"))
        if value is not None:
            values[key] = value
    if "retry_sent_timeouts" in raw:
        if isinstance(raw["retry_sent_timeouts"], bool):
            values["retry_sent_timeouts"] = raw["retry_sent_timeouts"]
        else:
            p.add("retry.retry_sent_timeouts", "must be true or false")
    statuses = raw.get("retry_statuses")
    if statuses is not None:
        if isinstance(statuses, list) and all(isinstance(s, int) and 400 <= s < 600 for s in statuses):
            values["retry_statuses"] = tuple(statuses)
        else:
            p.add("retry.retry_statuses", "must be a list of HTTP status codes (400-599)")
    return RetryConfig(**values)


def _groups(raw: Any, names: set[str], p: _Problems) -> Mapping[str, tuple[str, ...]]:
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, Mapping):
        p.add("models", "must map a logical model name to a list of deployment names")
        return MappingProxyType({})
    groups: dict[str, tuple[str, ...]] = {}
    for group, members in raw.items():
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            p.add(f"models.{group}", "must be a non-empty list of deployment names")
            continue
        for member in members:
            if member not in names:
                p.add(f"models.{group}", f"{member!r} is not a configured deployment")
        groups[str(group)] = tuple(members)
    return MappingProxyType(groups)


def _strings(raw: Mapping[str, Any], key: str, where: str, p: _Problems) -> tuple[str, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        p.add(f"{where}.{key}", f"{value!r} is not a list of strings")
        return None
    return tuple(value)


def _routing(
    raw: Any, groups: Mapping[str, tuple[str, ...]], servable: set[str], p: _Problems
) -> Mapping[str, GroupRouting]:
    """``routing: {group: {strategy, regions, required_tags, fallbacks}}`` for logical models.
    A fallback is another logical model, a deployment name, or a catalog model some deployment
    serves (``servable``: deployment names and their models)."""
    if raw is None:
        return MappingProxyType({})
    if not isinstance(raw, Mapping):
        p.add("routing", "must map a logical model name to its routing settings")
        return MappingProxyType({})
    out: dict[str, GroupRouting] = {}
    for group, entry in raw.items():
        where = f"routing.{group}"
        if group not in groups:
            p.add(where, f"{group!r} is not a logical model under models: ({', '.join(groups) or 'none'})")
        if not isinstance(entry, Mapping):
            p.add(where, "must be a mapping")
            continue
        p.unknown_keys(entry, {"strategy", "regions", "required_tags", "fallbacks"}, where)
        strategy = entry.get("strategy", "priority")
        if strategy not in ROUTING_STRATEGIES:
            p.add(f"{where}.strategy", f"{strategy!r} is not one of {', '.join(ROUTING_STRATEGIES)}")
        fallbacks = _strings(entry, "fallbacks", where, p) or ()
        for fb in fallbacks:
            if fb == group or (fb not in groups and fb not in servable):
                p.add(
                    f"{where}.fallbacks",
                    f"{fb!r} is not another logical model under models:, a deployment, "
                    "or a model a deployment serves",
                )
        out[str(group)] = GroupRouting(
            strategy=str(strategy),
            regions=_strings(entry, "regions", where, p),
            required_tags=_strings(entry, "required_tags", where, p) or (),
            fallbacks=fallbacks,
        )
    return MappingProxyType(out)


def _breaker(raw: Any, p: _Problems) -> BreakerSettings:
    """``breaker: {window_s, min_requests, failure_rate, consecutive_failures, cooldown_s, ...}``."""
    if raw is None:
        return BreakerSettings()
    if not isinstance(raw, Mapping):
        p.add("breaker", "must be a mapping")
        return BreakerSettings()
    numbers = {"window_s", "failure_rate", "cooldown_s", "max_cooldown_s"}
    integers = {"min_requests"}
    p.unknown_keys(raw, numbers | integers | {"consecutive_failures", "cooldown_on_429"}, "breaker")
    values: dict[str, Any] = {}
    for key in numbers | integers:
        value = p.number(raw, key, "breaker", integer=key in integers)
        if value is not None:
            values[key] = value
    streak = raw.get("consecutive_failures")
    if streak is not None:
        if isinstance(streak, int) and not isinstance(streak, bool) and streak >= 0:
            values["consecutive_failures"] = streak
        else:
            p.add("breaker.consecutive_failures", f"{streak!r} is not an integer ≥ 0 (0 turns it off)")
    if "cooldown_on_429" in raw:
        if isinstance(raw["cooldown_on_429"], bool):
            values["cooldown_on_429"] = raw["cooldown_on_429"]
        else:
            p.add("breaker.cooldown_on_429", "must be true or false")
    if values.get("failure_rate", 0.5) > 1:
        p.add("breaker.failure_rate", f"{values['failure_rate']!r} is not in (0, 1]")
    if values.get("max_cooldown_s", 300.0) < values.get("cooldown_s", 5.0):
        p.add("breaker.max_cooldown_s", "must be ≥ cooldown_s")
    return BreakerSettings(**values)


def _routing_state(raw: Any, environ: Mapping[str, str], p: _Problems) -> RoutingStateSettings:
    """``routing_state: {backend: memory|redis, url, prefix, ttl_s}``; ``url`` defaults to
    ``IMAGEGATE_REDIS_URL`` (the server's shared rate-limit Redis)."""
    if raw is None:
        return RoutingStateSettings()
    if not isinstance(raw, Mapping):
        p.add("routing_state", "must be a mapping")
        return RoutingStateSettings()
    p.unknown_keys(raw, {"backend", "url", "prefix", "ttl_s"}, "routing_state")
    backend = raw.get("backend", "memory")
    if backend not in ("memory", "redis"):
        p.add("routing_state.backend", f"{backend!r} is not one of: memory, redis")
        return RoutingStateSettings()
    values: dict[str, Any] = {"backend": backend}
    prefix = p.string(raw, "prefix", "routing_state")
    if prefix is not None:
        values["prefix"] = prefix
    ttl = p.number(raw, "ttl_s", "routing_state")
    if ttl is not None:
        values["ttl_s"] = float(ttl)
    url = (
        p.string(raw, "url", "routing_state") if "url" in raw else environ.get("IMAGEGATE_REDIS_URL") or None
    )
    if backend == "redis":
        if url is None:
            if "url" not in raw:
                p.add("routing_state.url", "missing (backend redis needs url: or IMAGEGATE_REDIS_URL)")
        elif not url.startswith(("redis://", "rediss://", "unix://")):
            shown = url.split("@")[-1]  # never echo a password
            p.add("routing_state.url", f"{shown!r} is not a redis://, rediss:// or unix:// URL")
        else:
            values["url"] = url
    return RoutingStateSettings(**values)


def _read_file(path: Path) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(["the top level must be a mapping"], source=str(path))
    return data


def _env_deployment(environ: Mapping[str, str], catalog: Catalog) -> dict[str, Any] | None:
    endpoint = environ.get("AZURE_OPENAI_ENDPOINT")
    if not endpoint:
        return None
    name = environ.get("AZURE_OPENAI_DEPLOYMENT") or environ.get("IMAGEGATE_DEPLOYMENT")
    model = environ.get("IMAGEGATE_MODEL") or (name if name in catalog else None)
    problems = []
    if not name:
        problems.append(
            "AZURE_OPENAI_DEPLOYMENT (or IMAGEGATE_DEPLOYMENT): not set; name the deployment to call"
        )
    elif not model:
        known = ", ".join(catalog.names())
        problems.append(f"IMAGEGATE_MODEL: not set, and deployment {name!r} is not a model name ({known})")
    if problems:
        raise ConfigError(problems, source="environment (AZURE_OPENAI_ENDPOINT is set)")
    raw: dict[str, Any] = {"name": name, "kind": "azure", "endpoint": endpoint, "model": model}
    if environ.get("AZURE_OPENAI_API_VERSION"):
        raw["api_version"] = environ["AZURE_OPENAI_API_VERSION"]
    if environ.get("AZURE_OPENAI_API_KEY"):
        raw["api_key_env"] = "AZURE_OPENAI_API_KEY"
    else:
        raw["auth"] = {"type": "entra"}
    return raw


def _emulated() -> dict[str, Any]:
    data = emulated_deployments_data()
    deployments = [
        {"endpoint": data["endpoint"], "api_key": data["api_key"], "kind": "azure", **d}
        for d in data["deployments"]
    ]
    return {"deployments": deployments, "models": data.get("models", {})}


def _bool_env(environ: Mapping[str, str], key: str, p: _Problems) -> bool | None:
    value = environ.get(key)
    if value is None:
        return None
    if value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    p.add(key, f"{value!r} is not a boolean (true/false)")
    return None


def _time_scale(raw: str | None, p: _Problems) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        p.add("IMAGEGATE_EMULATOR_TIME_SCALE", f"{raw!r} is not a number >= 0")
        return None
    return value


def load(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    catalog: Catalog | None = None,
    today: dt.date | None = None,
) -> ImageGateConfig:
    """Build the configuration (precedence in the module docstring). ``environ`` defaults to
    empty: composition roots pass ``os.environ`` explicitly. ``today`` dates retirement warnings."""
    environ = environ or {}
    catalog = catalog or default_catalog()
    file_path = Path(path) if path is not None else None
    if file_path is None and environ.get("IMAGEGATE_CONFIG"):
        file_path = Path(environ["IMAGEGATE_CONFIG"])
    raw: Mapping[str, Any] = _read_file(file_path) if file_path else {}
    source = str(file_path) if file_path else None
    p = _Problems()
    p.unknown_keys(raw, _TOP_KEYS, "config")
    emulated = False
    if not raw.get("deployments"):
        env_dep = _env_deployment(environ, catalog)
        if env_dep is not None:
            raw = {**raw, "deployments": [env_dep]}
            source = source or "environment"
        else:
            raw = {**_emulated(), **{k: v for k, v in raw.items() if k != "deployments"}}
            emulated = True
    listed = raw["deployments"]
    if not isinstance(listed, list):
        raise ConfigError(["deployments: must be a list"], source=source)
    built = [_deployment(d, i, environ, catalog, p) for i, d in enumerate(listed)]
    deployments = tuple(d for d in built if d is not None)
    seen: set[str] = set()
    for entry in listed:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name in seen:
            p.add("deployments", f"name {name!r} is used twice")
        if isinstance(name, str):
            seen.add(name)
    groups = _groups(raw.get("models"), seen, p)
    default_model = environ.get("IMAGEGATE_DEFAULT_MODEL") or raw.get("default_model") or DEFAULT_GROUP
    translate = _bool_env(environ, "IMAGEGATE_TRANSLATE", p)
    if translate is None:
        translate = bool(raw.get("translate", False))
    retry = _retry(raw.get("retry"), p)
    servable = {d.name for d in deployments} | {d.model for d in deployments}
    routing = _routing(raw.get("routing"), groups, servable, p)
    breaker = _breaker(raw.get("breaker"), p)
    routing_state = _routing_state(raw.get("routing_state"), environ, p)
    time_scale = _time_scale(environ.get("IMAGEGATE_EMULATOR_TIME_SCALE"), p)
    if p.items:
        raise ConfigError(p.items, source=source)
    today = today or dt.date.today()
    # retirement matters for real deployments, not for the built-in emulator's
    warnings = tuple(
        f"deployment {d.name}: {w}"
        for d in deployments
        if not emulated and (w := catalog.get(d.model).retirement_status(today))
    )
    return ImageGateConfig(
        deployments=deployments,
        models=groups,
        default_model=str(default_model),
        retry=retry,
        routing=routing,
        breaker=breaker,
        routing_state=routing_state,
        translate=translate,
        emulated=emulated,
        source=source,
        **({"emulator_time_scale": time_scale} if time_scale is not None else {}),
        warnings=warnings,
    )

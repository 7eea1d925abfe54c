"""What ``imagegate serve`` checks once, in its own process, before uvicorn starts any worker.

Each worker builds its app from the environment (``server.app.app_from_environ``) and decides
open mode in its lifespan; a problem found there reaches the operator as uvicorn's traceback of
the lifespan and exit code 3. Checked here first, the same problems are one message and exit
code 2 (configuration) or 1 (a service down), and no banner announces a server that never ran:

* the configuration and the server's environment variables, every problem of both at once;
* the database: reachable, migrated to head (once, not raced by N workers on a fresh database);
* open mode (no admin key, no virtual key) is refused on a non-loopback address.

It returns the warnings to show, once, before the workers start (``scale_out_warnings``): what
``--workers N`` would have each worker enforce on its own without Redis.

A check that passes here can still fail in a worker a moment later (the database going down in
between); the lifespan keeps its own checks for that and for apps built without ``serve``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from imagegate.config import ImageGateConfig
from imagegate.config_load import load
from imagegate.errors import ConfigError, StorageError
from imagegate.policy.keys import DEFAULT_PEPPER
from imagegate.server.settings import ServerSettings, settings_from_environ

__all__ = ["is_loopback", "open_mode_refused", "preflight", "scale_out_warnings"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_mode_refused(bind_host: str) -> ConfigError:
    return ConfigError(
        [
            f"bound to {bind_host} with no admin key and no virtual keys: anyone could generate "
            "images at your expense. Set IMAGEGATE_ADMIN_KEY (then create keys with POST "
            "/admin/keys) or create a key with `imagegate keys create`, or bind 127.0.0.1."
        ]
    )


def _settings_and_config(environ: Mapping[str, str]) -> tuple[ServerSettings, ImageGateConfig]:
    """The server's settings and the configuration, both read: one ``ConfigError`` lists the
    problems of both."""
    problems: list[str] = []
    try:
        config = _quietly_load(environ)
    except ConfigError as exc:
        problems.extend(_sourced(exc))
    try:
        settings = settings_from_environ(environ)
    except ConfigError as exc:
        problems.extend(_sourced(exc))
    if problems:
        raise ConfigError(problems)
    return settings, config


def _sourced(exc: ConfigError) -> list[str]:
    return [f"{exc.source}: {p}" if exc.source else p for p in exc.problems]


def _quietly_load(environ: Mapping[str, str]) -> ImageGateConfig:
    """The configuration, without its start-up notices (emulator mode, retired models): each
    worker logs them when it loads the same configuration."""
    notices = logging.getLogger("imagegate")
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        return load(None, environ)
    finally:
        notices.setLevel(level)


def scale_out_warnings(
    workers: int, config: ImageGateConfig, settings: ServerSettings, *, keys_checked: bool
) -> list[str]:
    """What ``workers`` processes would each enforce on their own (docs/gateway.md, "Scaling
    out"). ``keys_checked``: not open mode (an admin key, or a key in the database), so keys,
    and their rpm, are checked."""
    if workers < 2:
        return []
    warnings = []
    if settings.redis_url is None and keys_checked:
        warnings.append(
            f"--workers {workers} without IMAGEGATE_REDIS_URL: each worker counts a key's rpm on its "
            f"own, so a key limited to N requests per minute may make up to {workers}×N in all. Set "
            "IMAGEGATE_REDIS_URL (redis://host:6379/0) to share the limits between the workers."
        )
    # The built-in emulator runs inside each worker, with its own quotas: nothing to share.
    if config.routing_state.backend != "redis" and not config.emulated:
        warnings.append(
            f"--workers {workers} with routing_state backend {config.routing_state.backend!r}: each "
            "worker keeps its own quota window, circuit breaker and latency for every deployment, so "
            f"together they may send up to {workers}× a deployment's rpm (Azure then answers 429) and "
            "each finds an outage on its own. Set `routing_state: {backend: redis}` in the "
            'configuration to share them (docs/gateway.md, "Scaling out").'
        )
    return warnings


async def preflight(environ: Mapping[str, str], bind_host: str, workers: int = 1) -> list[str]:
    """Raise ``ConfigError`` (every problem) or ``StorageError`` (database unreachable); return
    the warnings to show before ``workers`` processes start (``scale_out_warnings``)."""
    from imagegate.stores.engine import normalize_url
    from imagegate.stores.sql import open_sql_stores

    settings, config = _settings_and_config(environ)
    keys_checked = settings.admin_key is not None
    if settings.database_url is None:
        return scale_out_warnings(workers, config, settings, keys_checked=keys_checked)
    shown = normalize_url(settings.database_url).render_as_string(hide_password=True)
    pepper = settings.key_pepper.encode() if settings.key_pepper else DEFAULT_PEPPER
    try:
        stores = await open_sql_stores(settings.database_url, pepper=pepper)
    except (OSError, SQLAlchemyError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        raise StorageError(f"cannot open the database {shown}: {type(cause).__name__}") from None
    try:
        keys_checked = keys_checked or bool(await stores.keys.list())
        if not keys_checked and not is_loopback(bind_host):
            raise open_mode_refused(bind_host)
    finally:
        await stores.aclose()
    return scale_out_warnings(workers, config, settings, keys_checked=keys_checked)

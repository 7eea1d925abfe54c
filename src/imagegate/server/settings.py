"""Limits and switches of the HTTP face, as frozen data (the server section of the config).

The defaults are named constants so a reader sees every bound in one place. Sizes are bytes,
durations carry their unit.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from imagegate.errors import ConfigError
from imagegate.stores.audit import PromptRetention
from imagegate.stores.writebehind import FLUSH_INTERVAL_S, MAX_BATCH, MAX_BUFFERED

N = TypeVar("N", int, float)

__all__ = [
    "DEFAULT_GRACEFUL_SHUTDOWN_S",
    "DEFAULT_LIMITS",
    "DEFAULT_PROBE_TICK_S",
    "MAX_GRACEFUL_SHUTDOWN_S",
    "ServerLimits",
    "ServerSettings",
    "settings_from_environ",
    "shutdown_shares",
    "turned_off",
]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """Bounds on what a client may send.

    ======================  ==========  ==================================================
    field                   default     why
    ======================  ==========  ==================================================
    max_json_body_bytes     1 MiB       a 32,000-character prompt is ~128 KiB in UTF-8
    max_multipart_bytes     64 MiB      the whole edit request, all images and the mask
    max_images              16          what the gpt-image edit API accepts
    max_image_bytes         50 MiB      Azure's per-image limit for edits
    max_mask_bytes          4 MiB       Azure's limit for the mask
    max_image_pixels        40 M        Pillow decompression-bomb guard (8K×5K)
    body_timeout_s          60 s        longest wait for the next piece of a request body
                                        (nginx's client_body_timeout): a client that sends
                                        its headers and stalls gets a 408, not a task forever
    ======================  ==========  ==================================================
    """

    max_json_body_bytes: int = 1 * MIB
    max_multipart_bytes: int = 64 * MIB
    max_images: int = 16
    max_image_bytes: int = 50 * MIB
    max_mask_bytes: int = 4 * MIB
    max_image_pixels: int = 40_000_000
    body_timeout_s: float = 60.0


DEFAULT_LIMITS = ServerLimits()

# A graceful shutdown (``imagegate serve --timeout-graceful-shutdown``) takes at most this long
# in all, to fit Kubernetes' default grace period of 30 s (SIGTERM, then SIGKILL) with 5 s to
# spare. Most of it is uvicorn's wait for requests still running; the rest (a fifth, at most
# LEDGER_DRAIN_S) is for what follows: the requests uvicorn then cancels settle their holds and
# record themselves, and the write-behind writes every queued ledger/audit row.
DEFAULT_GRACEFUL_SHUTDOWN_S = 25.0
MAX_GRACEFUL_SHUTDOWN_S = 3600.0  # the longest deadline a request may ask for
LEDGER_DRAIN_S = 5.0


def shutdown_shares(total_s: float) -> tuple[float, float]:
    """How a graceful shutdown of ``total_s`` is spent: (the seconds uvicorn waits for requests
    still running, the seconds left for recording the cancelled ones and draining the ledger)."""
    drain_s = min(LEDGER_DRAIN_S, total_s / 5)
    return total_s - drain_s, drain_s


# The prober's tick: how often it asks which deployments are due. When each one is due comes from
# the health policy (``policy.health.HealthConfig``: every 60 s when idle, every 10 s while its
# breaker is open), so a tick of 10 s keeps an open breaker's probes on time.
DEFAULT_PROBE_TICK_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """How the gateway process runs. Built once at start-up by ``settings_from_environ``.

    ==================  =========================  ==============================================
    field               environment                meaning
    ==================  =========================  ==============================================
    admin_key           IMAGEGATE_ADMIN_KEY        guards ``/admin/*``; unset → admin API off
    url_secret          IMAGEGATE_URL_SECRET       signs image URLs (>= 16 bytes); unset → random
    public_url          IMAGEGATE_PUBLIC_URL       origin put in image URLs (behind a proxy)
    data_dir            IMAGEGATE_DATA_DIR         SQLite file and images (default .imagegate)
    database_url        IMAGEGATE_DATABASE_URL     SQLite (default) or PostgreSQL
    url_ttl_s           IMAGEGATE_URL_TTL_S        lifetime of image URLs (default 3600)
    redis_url           IMAGEGATE_REDIS_URL        shared per-key rpm across workers/replicas
    key_pepper          IMAGEGATE_KEY_PEPPER       mixed into key hashes; same as ``imagegate keys``
    probe_tick_s        IMAGEGATE_PROBE_TICK_S     how often the active prober looks for deployments
                                                   due a probe (default 10); 0 turns probing off
    ledger_flush_s      IMAGEGATE_LEDGER_FLUSH_S   the longest a ledger/audit row waits before it is
                                                   written (default 0.05; a crash loses at most this)
    ledger_batch_rows   IMAGEGATE_LEDGER_BATCH     rows per write; a full batch is written at once
                                                   (default 500)
    ledger_max_pending  IMAGEGATE_LEDGER_MAX_PENDING  rows per table held while the database is down
                                                   before the oldest are dropped and counted (50000)
    audit_prompts       IMAGEGATE_AUDIT_PROMPTS    what the audit log keeps of a prompt: ``hash``
                                                   (default, its SHA-256), ``full`` or ``none``
    ledger_drain_s      IMAGEGATE_LEDGER_DRAIN_S   the longest a shutdown spends, once requests are
                                                   done or cancelled, recording them and writing
                                                   queued rows (default 5; ``serve`` sets it from
                                                   ``--timeout-graceful-shutdown``)
    ==================  =========================  ==============================================
    """

    admin_key: str | None = field(default=None, repr=False)
    url_secret: bytes = field(default=b"", repr=False)
    public_url: str = ""
    data_dir: Path = Path(".imagegate")
    database_url: str | None = field(default=None, repr=False)
    url_ttl_s: float = 3600.0
    redis_url: str | None = field(default=None, repr=False)
    key_pepper: str | None = field(default=None, repr=False)
    probe_tick_s: float = DEFAULT_PROBE_TICK_S
    ledger_flush_s: float = FLUSH_INTERVAL_S
    ledger_batch_rows: int = MAX_BATCH
    ledger_max_pending: int = MAX_BUFFERED
    audit_prompts: PromptRetention = PromptRetention.HASH
    ledger_drain_s: float = LEDGER_DRAIN_S
    limits: ServerLimits = DEFAULT_LIMITS


def settings_from_environ(environ: Mapping[str, str]) -> ServerSettings:
    """Read the server's environment once. A missing URL secret is generated here (and must be
    shared by every worker of one gateway: ``imagegate serve`` exports it before forking)."""
    problems: list[str] = []
    url_ttl_s = _number(
        environ,
        "IMAGEGATE_URL_TTL_S",
        3600.0,
        float,
        lambda v: v > 0,
        "a positive number of seconds",
        problems,
    )
    probe_tick_s = _number(
        environ,
        "IMAGEGATE_PROBE_TICK_S",
        DEFAULT_PROBE_TICK_S,
        float,
        lambda v: 0 <= v < float("inf"),
        "a number of seconds >= 0 (0 turns probing off)",
        problems,
    )
    ledger_flush_s = _number(
        environ,
        "IMAGEGATE_LEDGER_FLUSH_S",
        FLUSH_INTERVAL_S,
        float,
        lambda v: 0 < v <= 60,
        "a number of seconds above 0, at most 60",
        problems,
    )
    batch = _number(
        environ,
        "IMAGEGATE_LEDGER_BATCH",
        MAX_BATCH,
        int,
        lambda v: 1 <= v <= 100_000,
        "a whole number from 1 to 100000",
        problems,
    )
    pending = _number(
        environ,
        "IMAGEGATE_LEDGER_MAX_PENDING",
        MAX_BUFFERED,
        int,
        lambda v: batch <= v <= 10_000_000,
        f"a whole number from IMAGEGATE_LEDGER_BATCH ({batch}) to 10000000",
        problems,
    )
    drain_s = _number(
        environ,
        "IMAGEGATE_LEDGER_DRAIN_S",
        LEDGER_DRAIN_S,
        float,
        lambda v: 0 < v <= MAX_GRACEFUL_SHUTDOWN_S,
        f"a number of seconds above 0, at most {MAX_GRACEFUL_SHUTDOWN_S:g}",
        problems,
    )
    audit_prompts = PromptRetention.HASH
    raw_prompts = environ.get("IMAGEGATE_AUDIT_PROMPTS")
    if raw_prompts is not None:
        try:
            audit_prompts = PromptRetention(raw_prompts.strip().lower())
        except ValueError:
            allowed = ", ".join(p.value for p in PromptRetention)
            problems.append(f"IMAGEGATE_AUDIT_PROMPTS={raw_prompts!r} is not one of {allowed}")
    secret = environ.get("IMAGEGATE_URL_SECRET")
    if secret is not None and len(secret.encode()) < 16:
        problems.append("IMAGEGATE_URL_SECRET is shorter than 16 bytes; use a long random value")
    if problems:
        raise ConfigError(problems, source="environment")
    data_dir = Path(environ.get("IMAGEGATE_DATA_DIR", ".imagegate"))
    return ServerSettings(
        admin_key=environ.get("IMAGEGATE_ADMIN_KEY") or None,
        url_secret=secret.encode() if secret else secrets.token_bytes(32),
        public_url=environ.get("IMAGEGATE_PUBLIC_URL", ""),
        data_dir=data_dir,
        database_url=environ.get("IMAGEGATE_DATABASE_URL")
        or f"sqlite+aiosqlite:///{data_dir / 'imagegate.db'}",
        url_ttl_s=url_ttl_s,
        redis_url=environ.get("IMAGEGATE_REDIS_URL") or None,
        key_pepper=environ.get("IMAGEGATE_KEY_PEPPER") or None,
        probe_tick_s=probe_tick_s,
        ledger_flush_s=ledger_flush_s,
        ledger_batch_rows=batch,
        ledger_max_pending=pending,
        audit_prompts=audit_prompts,
        ledger_drain_s=drain_s,
    )


def turned_off(environ: Mapping[str, str], name: str) -> bool:
    """Whether an on-by-default switch (``IMAGEGATE_MALLOC_TUNING``, ``IMAGEGATE_GC_TUNING``)
    is set to ``0``, ``false``, ``no`` or ``off`` (any case); any other value leaves it on."""
    return environ.get(name, "1").strip().lower() in _OFF


_OFF = frozenset({"0", "false", "no", "off"})


def _number(
    environ: Mapping[str, str],
    name: str,
    default: N,
    parse: Callable[[str], N],
    ok: Callable[[N], bool],
    allowed: str,
    problems: list[str],
) -> N:
    """``environ[name]`` parsed and checked; on a bad value, a problem naming the variable, the
    value and what is allowed, and the default."""
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw.strip())
        if ok(value):
            return value
    except ValueError:
        pass
    problems.append(f"{name}={raw!r} is not {allowed}")
    return default

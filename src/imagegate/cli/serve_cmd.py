"""``imagegate serve``: run the HTTP gateway under uvicorn.

Thin on purpose: read flags, export what every worker must share, bind the port, hand over to
uvicorn with the app factory ``imagegate.server.app:app_from_environ`` (which loads the
configuration once per worker process, at start-up), and print the banner once it listens. With
``--workers N`` it says first, once, what the workers would each enforce on their own without
Redis: per-key rpm limits, routing state.
"""

from __future__ import annotations

import math
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape

from imagegate.cli.running import err_console, fail_on_errors

__all__ = ["serve"]

FACTORY = "imagegate.server.app:app_from_environ"


def serve(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML configuration file."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Non-loopback needs keys (see docs)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (share keys/ledger via the DB)."),
    log_level: str = typer.Option("info", help="uvicorn/imagegate log level."),
    timeout_graceful_shutdown: str = typer.Option(
        "25",
        "--timeout-graceful-shutdown",
        metavar="SECONDS",
        help="Longest a graceful shutdown (SIGTERM) takes: requests still running are then "
        "cancelled and recorded, and the ledger is written. Keep it under your grace period "
        "(Kubernetes: 30 s by default).",
    ),
) -> None:
    """Run the OpenAI- and Azure-compatible image gateway."""
    import anyio
    import uvicorn

    from imagegate.cli import listen
    from imagegate.server.logconfig import uvicorn_log_config
    from imagegate.server.preflight import preflight
    from imagegate.server.settings import MAX_GRACEFUL_SHUTDOWN_S, shutdown_shares

    # uvicorn waits for requests still running for most of it, then cancels them; the rest is
    # for the app's shutdown to record those and write the ledger's queue (server.settings).
    requests_s, drain_s = shutdown_shares(_seconds(timeout_graceful_shutdown, MAX_GRACEFUL_SHUTDOWN_S))
    if config is not None:
        if not config.is_file():
            raise typer.BadParameter(f"{config} is not a file", param_hint="--config")
        os.environ["IMAGEGATE_CONFIG"] = str(config)
    # Configuration, environment, database and open mode, checked once before any worker: one
    # clear message and exit code 2 (1: the database is down) instead of each worker's traceback.
    with fail_on_errors():
        warnings = anyio.run(preflight, dict(os.environ), host, workers)
    # Every worker must sign image URLs with the same secret, or a URL minted by one worker
    # would be refused by the next; generate one per `serve` when none is configured.
    os.environ.setdefault("IMAGEGATE_URL_SECRET", secrets.token_urlsafe(32))
    os.environ["IMAGEGATE_BIND_HOST"] = host
    os.environ["IMAGEGATE_LOG_LEVEL"] = log_level
    os.environ["IMAGEGATE_LEDGER_DRAIN_S"] = f"{drain_s:g}"
    server = uvicorn.Config(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=uvicorn_log_config(log_level),  # uvicorn's lines are JSON too
        access_log=False,  # the gateway writes its own structured access log
        timeout_keep_alive=30,
        timeout_graceful_shutdown=requests_s,  # type: ignore[arg-type]  # (typed int, takes a float)
    )
    # Bound before anything is announced or started: a taken port is one line and exit code 1;
    # the banner is printed once the gateway listens (cli.listen).
    with listen.bind_socket(host, port) as sock, _metrics_shared_by(workers):
        for warning in warnings:
            err_console.print(f"[yellow]warning[/]: {escape(warning)}")
        listen.run_announced(server, sock, _banner(host, port))


def _seconds(raw: str, most: float) -> float:
    """``--timeout-graceful-shutdown``: a number of seconds above 0, at most ``most``."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= most:  # also refuses nan
        raise typer.BadParameter(
            f"{raw!r} is not allowed: a number of seconds above 0, at most {most:g}",
            param_hint="--timeout-graceful-shutdown",
        )
    return value


@contextmanager
def _metrics_shared_by(workers: int) -> Iterator[None]:
    """With several workers, a scrape of ``/metrics`` reaches one of them: give them a fresh
    directory for prometheus-client's multiprocess mode (``server.metrics``), removed when the
    server stops. A ``PROMETHEUS_MULTIPROC_DIR`` already set is used as it is (empty it between
    runs, as prometheus-client asks)."""
    if workers == 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="imagegate-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _banner(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    return f"""imagegate gateway on {base}
  OpenAI shape:  POST {base}/v1/images/generations, /v1/images/edits
  Azure shape:   POST {base}/openai/deployments/<model>/images/generations?api-version=2025-04-01-preview
  ops:           {base}/healthz  {base}/readyz  {base}/metrics  {base}/docs

  curl {base}/v1/images/generations -H 'authorization: Bearer <key>' \\
       -H 'content-type: application/json' -d '{{"prompt": "a red fox", "quality": "low"}}'

  from openai import OpenAI
  OpenAI(base_url="{base}/v1", api_key="<key>").images.generate(prompt="a red fox")

  <key>: a virtual key (`imagegate keys create` or POST /admin/keys); in open mode (loopback,
  no keys, no admin key) any value works. See docs/gateway.md.
"""

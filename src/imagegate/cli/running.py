"""What every library-backed command shares: open the gate from ``--config`` (or the
environment, or the built-in emulator), wait with a live spinner showing elapsed time, route the
library's notices to stderr, and turn errors into one clear line and a non-zero exit code."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import typer
from rich.console import Console
from rich.markup import escape

from imagegate.api import AsyncImageGate
from imagegate.errors import ConfigError, ImageGateError, InvalidRequest

__all__ = ["config_option", "err_console", "fail_on_errors", "open_gate", "out_console", "run_waiting"]

T = TypeVar("T")
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    """Console for tables on stdout; wide when piped, so tables do not fold into 80 columns."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160
    return console


config_option = typer.Option(
    None,
    "--config",
    "-c",
    help="YAML configuration (default: $IMAGEGATE_CONFIG, Azure env vars, or the built-in emulator).",
)


class _NoticeHandler(logging.Handler):
    """Library warnings (emulator mode, retired models) as one stderr line each."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[yellow]{escape(record.getMessage())}[/]")


def _install_notices() -> None:
    logger = logging.getLogger("imagegate")
    if not any(isinstance(h, _NoticeHandler) for h in logger.handlers):
        handler = _NoticeHandler(level=logging.WARNING)
        logger.addHandler(handler)


def open_gate(config: Path | None) -> AsyncImageGate:
    _install_notices()
    return AsyncImageGate.from_config(config) if config is not None else AsyncImageGate.from_env()


def run_waiting(label: str, fn: Callable[[], Awaitable[T]], *, quiet: bool = False) -> T:
    """Run ``fn`` on an event loop; on a terminal, show a spinner with the elapsed time."""

    async def main() -> T:
        if quiet or not err_console.is_terminal:
            return await fn()
        start = time.monotonic()
        with err_console.status(label) as status:
            async with anyio.create_task_group() as tg:

                async def tick() -> None:
                    while True:
                        status.update(f"{label} [dim]{time.monotonic() - start:.1f}s[/]")
                        await anyio.sleep(0.1)

                tg.start_soon(tick)
                try:
                    result = await fn()
                finally:
                    tg.cancel_scope.cancel()
        return result

    return anyio.run(main)


@contextmanager
def fail_on_errors() -> Iterator[None]:
    """One clear line (all problems for a config error), no traceback, exit 2 for caller
    mistakes and configuration, 1 for everything else."""
    try:
        yield
    except (ConfigError, InvalidRequest) as exc:
        err_console.print(f"[red]error[/]: {escape(exc.message)}")
        raise typer.Exit(2) from None
    except ImageGateError as exc:
        tried = f" (after {len(exc.attempts)} attempt(s))" if exc.attempts else ""
        err_console.print(f"[red]error[/]: {escape(exc.message)}{tried}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        raise typer.Exit(130) from None

"""``imagegate serve``'s socket and uvicorn run: the port is bound before anything is announced,
and the banner is printed once the gateway listens.

``uvicorn.run`` binds the port only after the app's start-up (one worker) and says nothing we
control when it cannot: a banner printed before it announced a gateway that then failed with
"address already in use". Here ``serve`` binds the socket itself first (a taken port is one
``error:`` line and exit code 1, before any worker starts) and hands it to uvicorn, which
serves on it as it does for its own workers. The banner is printed when uvicorn says it is
serving: with one process when its start-up is complete (lifespan done, socket accepting),
with several workers when the first of them reports so to the supervisor.
"""

from __future__ import annotations

import errno
import socket

import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from imagegate.cli.running import err_console

__all__ = ["bind_socket", "run_announced"]


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening address, bound now (as uvicorn binds it for several workers)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as exc:  # not an address this machine can resolve
        sock.close()
        raise typer.BadParameter(
            f"{host!r} is not an address to listen on ({exc.strerror})", param_hint="--host"
        ) from None
    except OSError as exc:
        sock.close()
        why = (exc.strerror or str(exc)).lower()
        if exc.errno == errno.EADDRINUSE:
            why += " (another process listens there: stop it or choose another --port)"
        err_console.print(f"[red]error[/]: cannot listen on {host}:{port}: {why}")
        raise typer.Exit(1) from None
    sock.set_inheritable(True)  # the workers serve on it
    return sock


def run_announced(config: uvicorn.Config, sock: socket.socket, banner: str) -> None:
    """Serve ``config``'s app on ``sock``; print ``banner`` once it is served. Exit code 3 (as
    uvicorn's) when it never was: the app's start-up failed, in every worker."""
    try:
        if config.workers > 1:
            supervisor = _AnnouncingSupervisor(config, [sock], banner)
            supervisor.run()
            started = supervisor.announced
        else:
            server = _AnnouncingServer(config, banner)
            server.run(sockets=[sock])
            started = server.started
    except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C during start-up is a quiet stop
        return
    if not started:
        raise typer.Exit(STARTUP_FAILURE)


class _AnnouncingServer(uvicorn.Server):
    """One process: the banner when start-up is complete and the socket accepts."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            typer.echo(self._banner)


class _AnnouncingSupervisor(Multiprocess):
    """Several workers: the banner when the first one reports it serves. The supervisor asks its
    workers whether they are alive every half second; until one is ready, it also asks that."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], banner: str) -> None:
        super().__init__(config, sockets)
        self._banner = banner
        self.announced = False

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        if self.announced or self.should_exit.is_set():
            return
        if any(process.is_ready(timeout=1) for process in self.processes):
            self.announced = True
            typer.echo(self._banner)

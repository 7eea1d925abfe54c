"""Run an ASGI app under uvicorn on 127.0.0.1 in a background thread (e2e tests, benchmarks).

The socket is bound *before* the thread starts (port 0: the OS picks a free port), so the URL is
known at once and there is no race between "pick a port" and "bind it".
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve_in_thread"]


@contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", startup_timeout_s: float = 10.0
) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:<port>``) while ``app`` is served."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

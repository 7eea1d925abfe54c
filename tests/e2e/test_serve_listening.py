"""``imagegate serve`` as a real process: the banner that says the gateway is up is printed once it
listens (a request sent the moment it appears is answered), once, with one worker or several.
Before, it was printed before uvicorn had even bound the port."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from imagegate.emulator.serve import free_port

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("workers", [1, 2])
def test_the_banner_is_printed_once_the_gateway_listens(tmp_path: Path, workers: int) -> None:
    port = free_port()
    env = {
        **os.environ,
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_PROBE_TICK_S": "0",
        "AZURE_OPENAI_ENDPOINT": "",
        "IMAGEGATE_CONFIG": "",
        "IMAGEGATE_ADMIN_KEY": "",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "imagegate", "serve", "--port", str(port), "--workers", str(workers)]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True, cwd=tmp_path)
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=60)  # the banner's first line, or the test fails here
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)  # at once, no retry
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        reader.join(timeout=10)
        log.close()
    assert first == f"imagegate gateway on http://127.0.0.1:{port}\n", (tmp_path / "serve.log").read_text()
    assert answer.status_code == 200
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert not any("imagegate gateway on" in line for line in rest)  # once, whatever the workers

"""``imagegate emulator`` as a real process: it prints the banner, listens, and answers."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time

import httpx
import pytest

from imagegate.emulator.serve import free_port

pytestmark = pytest.mark.e2e


def test_cli_serves_the_default_deployments() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "imagegate", "emulator", "--port", str(port), "--time-scale", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                listing = httpx.get(f"{base}/_emulator/deployments", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "emulator did not start"
                time.sleep(0.1)
        assert len(listing.json()["deployments"]) == 6
        r = httpx.post(
            f"{base}/openai/deployments/gpt-image-1/images/generations?api-version=2025-04-01-preview",
            headers={"api-key": "emulator-key"},
            json={"prompt": "cli fox", "quality": "low"},
            timeout=20,
        )
        assert r.status_code == 200 and r.json()["data"][0]["b64_json"]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert "api key: emulator-key" in output
    assert f"http://127.0.0.1:{port}" in output


def test_the_banner_is_printed_once_the_emulator_listens() -> None:
    """A request sent the moment the banner appears is answered: the banner is printed once the
    emulator listens (before, it was printed before uvicorn had even bound the port)."""
    port = free_port()
    cmd = [sys.executable, "-m", "imagegate", "emulator", "--port", str(port), "--time-scale", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=60)  # the banner's first line, or the test fails here
        answer = httpx.get(f"http://127.0.0.1:{port}/_emulator/deployments", timeout=10)  # no retry
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    assert first.startswith(f"Azure OpenAI image emulator on http://127.0.0.1:{port} (time scale 0")
    assert answer.status_code == 200
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert not any("image emulator on" in line for line in rest)  # once

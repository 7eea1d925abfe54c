"""``imagegate serve --workers 2`` as real processes: requests spread over both workers, and every
``/metrics`` scrape, whichever worker answers it, counts all of them (Prometheus multiprocess
mode). Before, each worker answered with its own counters, so successive scrapes of one gateway
went up and down (Prometheus reads that as counter resets) and each showed part of the traffic."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from imagegate.emulator.serve import free_port

pytestmark = pytest.mark.e2e

REQUESTS = 16


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_EMULATOR_TIME_SCALE": "0",
        "IMAGEGATE_PROBE_TICK_S": "0",
        "AZURE_OPENAI_ENDPOINT": "",
        "IMAGEGATE_CONFIG": "",
        "IMAGEGATE_ADMIN_KEY": "",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "imagegate", "serve", "--port", str(port), "--workers", "2"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        time.sleep(2)  # both workers up: readyz answered by one of them
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _requests_total(text: str) -> float:
    pattern = r'imagegate_requests_total\{method="POST",route="/v1/images/generations",status="200"\} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_every_scrape_counts_the_requests_of_every_worker(gateway: str) -> None:
    def generate(i: int) -> int:
        with httpx.Client(timeout=60) as client:  # a connection of its own: any worker may take it
            body = {"prompt": f"fox {i}", "quality": "low", "model": "gpt-image-1-mini"}
            return client.post(f"{gateway}/v1/images/generations", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(generate, range(REQUESTS))) == [200] * REQUESTS
    scrapes = []
    for _ in range(8):
        with httpx.Client(timeout=10) as client:
            scrapes.append(client.get(f"{gateway}/metrics").text)
    assert [_requests_total(text) for text in scrapes] == [float(REQUESTS)] * len(scrapes)
    last = scrapes[-1]
    assert "imagegate_requests_in_flight 0.0" in last
    assert re.search(r'imagegate_images_total\{model="gpt-image-1-mini",operation="generate"\} 16\.0', last)
    assert "imagegate_ledger_pending_rows" in last
    assert re.search(r'imagegate_breaker_state\{deployment="gpt-image-1-mini"\} 0\.0', last)

"""``imagegate serve`` as a real process, shut down (SIGTERM) while requests still run: what the
clients get, what is logged, what the ledger says once the process has exited.

The upstream is the built-in emulator, in-process, slowed down so that a generation outlasts
``--timeout-graceful-shutdown``: uvicorn then cancels the requests still running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from imagegate.emulator.serve import free_port

pytestmark = pytest.mark.e2e

GRACE_S = "5"  # uvicorn waits 4 s for running requests, then cancels them; 1 s is the ledger's


@dataclass
class Gateway:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    database: Path

    def in_flight(self) -> float:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        match = re.search(r"^imagegate_requests_in_flight (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def wait_until_running(self, requests: int) -> None:
        deadline = time.monotonic() + 60
        while self.in_flight() < requests:
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def shut_down(self) -> list[dict[str, Any]]:
        """SIGTERM, wait for the process to exit; its log lines (JSON, one object each)."""
        self.proc.send_signal(signal.SIGTERM)
        # uvicorn raises the signal again once shut down: the exit status is "killed by SIGTERM"
        assert self.proc.wait(timeout=60) in (0, -signal.SIGTERM), self.log.read_text()
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def ledger(self) -> list[tuple[Any, ...]]:
        """The request rows: status, HTTP status, error code, cost (nano-USD), exact."""
        with sqlite3.connect(self.database) as db:
            return db.execute(
                "SELECT status, http_status, error_code, cost_nanos, cost_exact FROM ig_ledger_entries"
                " WHERE kind = 'request' ORDER BY id"
            ).fetchall()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose generations take far longer than its shutdown."""
    with _serve(tmp_path, time_scale="1000") as gateway:
        yield gateway


@pytest.fixture
def fast_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose generations are done at once."""
    with _serve(tmp_path, time_scale="0") as gateway:
        yield gateway


@contextmanager
def _serve(tmp_path: Path, *, time_scale: str) -> Iterator[Gateway]:
    port = free_port()
    env = {
        **os.environ,
        "IMAGEGATE_DATA_DIR": str(tmp_path / "data"),
        "IMAGEGATE_EMULATOR_TIME_SCALE": time_scale,
        "IMAGEGATE_PROBE_TICK_S": "0",
        "AZURE_OPENAI_ENDPOINT": "",
        "IMAGEGATE_CONFIG": "",
        "IMAGEGATE_ADMIN_KEY": "",
        "IMAGEGATE_DATABASE_URL": "",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [
        sys.executable, "-m", "imagegate", "serve", "--port", str(port),
        "--timeout-graceful-shutdown", GRACE_S,
    ]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=out, cwd=tmp_path)
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log, tmp_path / "data" / "imagegate.db")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{gateway.base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        yield gateway
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _no_traceback(lines: list[dict[str, Any]]) -> None:
    assert not [line for line in lines if "exc" in line], lines
    assert not [line for line in lines if line.get("message", "").startswith("Exception in ASGI")], lines


def test_the_sdk_gets_a_503_it_does_not_retry_and_the_log_has_no_traceback(gateway: Gateway) -> None:
    """Before: uvicorn's plain-text 500 "Internal Server Error" and an "Exception in ASGI
    application" traceback; the SDK retried the 500 (its default: 2 retries), and the request,
    whose image may already have been made and billed, was sent again (here, to a gateway that
    was gone: the SDK ended with a connection error)."""
    client = openai.OpenAI(base_url=f"{gateway.base}/v1", api_key="open-mode", max_retries=2, timeout=120)
    with ThreadPoolExecutor(1) as pool:
        call: Future[Any] = pool.submit(client.images.generate, prompt="a red fox", quality="high")
        gateway.wait_until_running(1)
        lines = gateway.shut_down()
        with pytest.raises(openai.InternalServerError) as caught:
            call.result(timeout=60)
    error = caught.value
    assert error.status_code == 503 and error.response.headers["x-should-retry"] == "false"
    assert isinstance(error.body, dict) and error.body["code"] == "shutting_down"
    _no_traceback(lines)
    warnings = [
        line for line in lines if line["logger"].startswith("imagegate") and line["level"] == "warning"
    ]
    rid = error.response.headers["x-request-id"]
    assert [line["message"] for line in warnings if "shutdown" in line["message"]] == [
        f"request {rid} stopped by the shutdown: answered 503 shutting_down"
    ]
    # recorded as what happened: cancelled, the 503 its client got, the estimate kept (the
    # attempt was in flight, so it may be billed); before, 499
    [(status, http_status, code, cost_nanos, exact)] = gateway.ledger()
    assert (status, http_status, code, exact) == ("cancelled", 503, "cancelled", 0) and cost_nanos > 0


def test_a_response_cut_off_while_a_slow_client_reads_it_is_in_the_ledger(fast_gateway: Gateway) -> None:
    """Ten images (22 MB of JSON) to a client that reads the head and then nothing more: the send
    still waits when the shutdown cancels it. Before, its ledger and audit rows (written after
    the body is sent) were never written: a request made and billed was missing from the ledger."""
    gateway = fast_gateway
    body = json.dumps({"prompt": "a red fox", "quality": "low", "n": 10}).encode()
    host, port = gateway.base.removeprefix("http://").split(":")
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's window
        client.settimeout(60)
        client.connect((host, int(port)))
        client.sendall(
            b"POST /v1/images/generations HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(1024)
        assert head.startswith(b"HTTP/1.1 200 ")
        lines = gateway.shut_down()  # meanwhile the client reads no more
    _no_traceback(lines)
    assert [line["message"] for line in lines if "cut off by the shutdown" in line.get("message", "")]
    [(status, http_status, code, cost_nanos, exact)] = gateway.ledger()
    assert (status, http_status, code, exact) == ("cancelled", 200, "undelivered", 1) and cost_nanos > 0

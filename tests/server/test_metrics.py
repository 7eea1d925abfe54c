"""The typed recorders: every observation lands in its own labelled series."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from imagegate.server.metrics import GatewayMetrics


def _value(m: GatewayMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_repeated_observations_accumulate_per_label_set() -> None:
    m = GatewayMetrics()
    for _ in range(3):
        m.observe_request(route="/v1/images/generations", method="POST", status=200, duration_s=0.5)
    m.observe_request(route="/v1/images/generations", method="POST", status=429, duration_s=0.01)
    m.observe_attempt(deployment="east", outcome="ok", duration_s=2.0)
    m.observe_attempt(deployment="east", outcome="rate_limited")
    m.observe_attempt(deployment="west", outcome="ok", duration_s=4.0)
    m.observe_cost(model="gpt-image-1", deployment="east", usd=Decimal("0.011"))
    m.observe_cost(model="gpt-image-1", deployment="east", usd=Decimal("0.011"))
    route = {"route": "/v1/images/generations", "method": "POST"}
    assert _value(m, "imagegate_requests_total", **route, status="200") == 3
    assert _value(m, "imagegate_requests_total", **route, status="429") == 1
    assert _value(m, "imagegate_request_duration_seconds_count", route="/v1/images/generations") == 4
    assert _value(m, "imagegate_upstream_attempts_total", deployment="east", outcome="ok") == 1
    assert _value(m, "imagegate_upstream_attempts_total", deployment="east", outcome="rate_limited") == 1
    assert _value(m, "imagegate_upstream_attempts_total", deployment="west", outcome="ok") == 1
    assert _value(m, "imagegate_upstream_duration_seconds_sum", deployment="west") == 4.0
    assert _value(m, "imagegate_cost_usd_total", model="gpt-image-1", deployment="east") == 0.022
    # each app's metrics are its own, cached children included
    other = GatewayMetrics()
    other.observe_attempt(deployment="east", outcome="ok")
    assert _value(other, "imagegate_upstream_attempts_total", deployment="east", outcome="ok") == 1
    assert _value(m, "imagegate_upstream_attempts_total", deployment="east", outcome="ok") == 1


_WORKER = """
import os, sys
from imagegate.server.metrics import GatewayMetrics
m = GatewayMetrics(shared_routing_state=sys.argv[1] == "shared")
for _ in range(int(sys.argv[2])):
    m.observe_request(route="/v1/images/generations", method="POST", status=200, duration_s=0.5)
m.in_flight.inc(int(sys.argv[3]))
m.observe_breaker(deployment="east", state=sys.argv[4])
m.track_ledger_pending(lambda: int(sys.argv[5]))
if sys.argv[6] == "crash":
    m.refresh_process_gauges()
    os._exit(0)  # gone without a word, as a killed worker
sys.stdout.write(m.render().decode())
"""


def _worker(directory: Path, *args: object) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, *map(str, args)], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def _sample(text: str, name: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith((name + " ", name + "{"))]
    return float(line.rsplit(" ", 1)[1])


def test_several_worker_processes_are_one_gateway_in_every_scrape(tmp_path: Path) -> None:
    """Multiprocess mode (``serve --workers N``): counters of every worker, also of one that has
    died, are summed; the requests in flight and the ledger backlog are those of live workers
    only (a crashed worker's in-flight requests are not in flight); the breaker is the worst
    state any worker sees, with per-process routing state."""
    _worker(tmp_path, "own", 3, 5, "open", 11, "crash")  # a worker that died
    text = _worker(tmp_path, "own", 2, 1, "closed", 7, "answer")
    requests = 'imagegate_requests_total{method="POST",route="/v1/images/generations",status="200"}'
    assert _sample(text, requests) == 5.0
    assert _sample(text, "imagegate_requests_in_flight") == 1.0
    assert _sample(text, "imagegate_ledger_pending_rows") == 7.0
    assert _sample(text, 'imagegate_breaker_state{deployment="east"}') == 0.0  # the open one died
    # while a worker that sees the breaker open lives, every scrape shows it open
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = _WORKER.replace("os._exit(0)", "print('ready', flush=True); sys.stdin.read(); os._exit(0)")
    live = subprocess.Popen(
        [sys.executable, "-c", script, "own", "0", "2", "open", "4", "crash"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert live.stdout is not None and live.stdout.readline() == "ready\n"
        text = _worker(tmp_path, "own", 0, 0, "closed", 7, "answer")
        assert _sample(text, 'imagegate_breaker_state{deployment="east"}') == 2.0
        assert _sample(text, "imagegate_requests_in_flight") == 2.0
        assert _sample(text, "imagegate_ledger_pending_rows") == 11.0
    finally:
        live.communicate("")
    text = _worker(tmp_path, "own", 0, 0, "closed", 7, "answer")
    assert _sample(text, 'imagegate_breaker_state{deployment="east"}') == 0.0
    assert _sample(text, "imagegate_requests_in_flight") == 0.0


def test_the_metrics_of_one_process_need_no_directory() -> None:
    m = GatewayMetrics()
    assert m.multiprocess_dir is None
    m.track_ledger_pending(lambda: 3)
    assert _value(m, "imagegate_ledger_pending_rows") == 3.0


async def test_the_gauge_refresher_reports_unreadable_routing_state_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis down every worker's refresher fails every few seconds: one WARNING line each
    time (``/readyz`` says the same), not a traceback."""
    from imagegate.errors import StorageError
    from imagegate.server.deployments import run_gauge_refresher

    async def status() -> Any:
        raise StorageError("Redis (routing state) is unavailable or refused the operation (ConnectionError)")

    async def stop(_: float) -> None:
        raise asyncio.CancelledError

    with caplog.at_level(logging.WARNING), pytest.raises(asyncio.CancelledError):
        await run_gauge_refresher(GatewayMetrics(), status, sleep=stop)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "Redis (routing state) is unavailable" in record.getMessage()

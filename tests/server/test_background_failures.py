"""Background work while what it reads is down: the active prober, each ``/metrics`` scrape, the
gauge refresher and the housekeeping sweeper report a failure in one WARNING line per kind of
failure (what failed and why: the Redis URL without its password, the exception in one line),
with the traceback only at DEBUG; the same failure again is not repeated at WARNING, and working
again is said once, at INFO. Before, the prober and every scrape logged a full traceback each
time (a 40-line traceback every 10 s per worker while Redis was down)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate.api import AsyncImageGate
from imagegate.config import ImageGateConfig
from imagegate.config_load import load
from imagegate.errors import StorageError
from imagegate.server.app import _sweep_once, create_app
from imagegate.server.deployments import DeploymentStatus, run_gateway_prober, run_gauge_refresher
from imagegate.server.failure_log import FailureLog
from imagegate.server.governance import Governance
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.settings import ServerSettings
from imagegate.stores.memory import MemoryStores

from .fakes import FakeBackend

PASSWORD = "s3cret-redis-password"


def _dead_redis() -> tuple[str, str]:
    """A Redis URL with a password where nothing listens, and how logs may show it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://:{PASSWORD}@127.0.0.1:{port}/0", f"redis://:***@127.0.0.1:{port}/0"


def _config(tmp_path: Path, url: str) -> ImageGateConfig:
    (tmp_path / "gw.yaml").write_text(
        f"routing_state: {{backend: redis, url: '{url}', prefix: 'bg-{secrets.token_hex(4)}'}}\n"
    )
    return load(tmp_path / "gw.yaml", {})


def _server_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("imagegate.server") and r.levelno == level]


def _one_warning(caplog: pytest.LogCaptureFixture, what: str, shown_url: str) -> str:
    [warning] = _server_lines(caplog, logging.WARNING)
    assert warning.exc_info is None  # one line, no traceback
    message = warning.getMessage()
    assert "\n" not in message
    assert what in message and shown_url in message
    assert "ConnectionError" in message and "Connect call failed" in message  # the exception, in one line
    assert PASSWORD not in caplog.text
    return message


class Ticks:
    """An injected sleep: returns at once ``n`` times, then stops the loop (cancels it)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if len(self.asked) > self.n:
            raise asyncio.CancelledError


async def test_the_prober_reports_redis_down_in_one_warning_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, shown = _dead_redis()
    gate = AsyncImageGate(_config(tmp_path, url))
    ticks = Ticks(2)
    try:
        with caplog.at_level(logging.DEBUG, logger="imagegate"), pytest.raises(asyncio.CancelledError):
            await run_gateway_prober(gate, tick_s=10.0, sleep=ticks)
    finally:
        await gate.aclose()
    assert ticks.asked == [10.0, 10.0, 10.0]  # three failed passes, a tick after each
    message = _one_warning(caplog, "active probing", shown)
    assert "every 10 s" in message
    tracebacks = [r for r in _server_lines(caplog, logging.DEBUG) if r.exc_info]
    assert len(tracebacks) == 3  # each failure's traceback, at DEBUG only


async def test_each_metrics_scrape_with_redis_down_is_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, shown = _dead_redis()
    settings = ServerSettings(data_dir=tmp_path, probe_tick_s=0)
    app = create_app(_config(tmp_path, url), settings=settings, open_access=True)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw,
    ):
        with caplog.at_level(logging.DEBUG, logger="imagegate"):
            scrapes = [await gw.get("/metrics") for _ in range(3)]
        refused = await gw.post("/v1/images/generations", json={"prompt": "a fox", "quality": "low"})
    # where Redis is, and its error, are for the logs: a client reads only that storage failed
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_error"
    assert "127.0.0.1" not in refused.text and "redis://" not in refused.text
    assert [r.status_code for r in scrapes] == [200, 200, 200]
    assert all("imagegate_requests_in_flight" in r.text for r in scrapes)  # the rest is still shown
    _one_warning(caplog, "/metrics", shown)
    assert len([r for r in _server_lines(caplog, logging.DEBUG) if r.exc_info]) == 3


async def test_the_gauge_refresher_warns_once_per_kind_and_says_when_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[BaseException | None] = [
        StorageError(
            "Redis (routing state) is unavailable", detail="Redis at redis://r:1/0: ConnectionError: a"
        ),
        StorageError(
            "Redis (routing state) is unavailable", detail="Redis at redis://r:1/0: ConnectionError: a"
        ),
        KeyError("views"),  # another kind of failure: a line of its own
        None,  # works again
        None,
    ]

    async def status() -> Any:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return DeploymentStatus(views=(), queued=0, now=0.0)

    with caplog.at_level(logging.DEBUG, logger="imagegate"), pytest.raises(asyncio.CancelledError):
        await run_gauge_refresher(GatewayMetrics(), status, sleep=Ticks(4))
    warnings = [r.getMessage() for r in _server_lines(caplog, logging.WARNING)]
    assert len(warnings) == 2, warnings
    assert (
        "refreshing the metric gauges" in warnings[0] and "redis://r:1/0: ConnectionError: a" in warnings[0]
    )
    assert "KeyError: 'views'" in warnings[1]
    assert all(r.exc_info is None for r in _server_lines(caplog, logging.WARNING))
    [info] = [r.getMessage() for r in _server_lines(caplog, logging.INFO)]
    assert "refreshing the metric gauges" in info and "works again" in info


class _DownBudgets:
    async def release_stale(self, **_: Any) -> int:
        raise StorageError("the budget store is unavailable or refused the operation (OperationalError)")


async def test_the_sweeper_reports_a_database_failure_in_one_warning_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from imagegate.server.service import ImageService

    stores = MemoryStores()
    governance = Governance(budgets=_DownBudgets())  # type: ignore[arg-type]
    service = ImageService(
        backend=FakeBackend(), governance=governance, metrics=GatewayMetrics(), idempotency=stores.idempotency
    )
    failures = FailureLog(logging.getLogger("imagegate.server"), "the housekeeping sweep")
    with caplog.at_level(logging.DEBUG, logger="imagegate"):
        for _ in range(2):
            await _sweep_once(governance, service, failures)
    [warning] = _server_lines(caplog, logging.WARNING)
    assert warning.exc_info is None
    assert (
        "housekeeping sweep" in warning.getMessage() and "budget store is unavailable" in warning.getMessage()
    )
    assert len([r for r in _server_lines(caplog, logging.DEBUG) if r.exc_info]) == 2

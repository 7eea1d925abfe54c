"""A gateway process logs JSON, one object per line: the access lines, every other imagegate
record (tracebacks included, as one string field) and uvicorn's own records, each with a UTC
timestamp and a level, so a log pipeline parses every line and an operator can order them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime

import httpx
from starlette.requests import Request
from starlette.responses import Response

from imagegate.server.app import build_app
from imagegate.server.logconfig import JsonFormatter, RequestIdFilter, uvicorn_log_config
from imagegate.server.state import GatewayState


def _record(
    name: str, msg: str, *args: object, level: int = logging.INFO, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def _timestamp(line: dict[str, object]) -> datetime:
    ts = line["ts"]
    assert isinstance(ts, str) and ts.endswith("Z")
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_an_access_line_gains_a_timestamp_and_a_level_and_keeps_its_fields() -> None:
    access = '{"event":"request","request_id":"req_1","status":200,"duration_ms":1.5}'
    text = JsonFormatter().format(_record("imagegate.server.access", access))
    assert "\n" not in text
    line = json.loads(text)
    assert line["level"] == "info" and line["logger"] == "imagegate.server.access"
    assert (line["event"], line["request_id"], line["status"], line["duration_ms"]) == (
        "request",
        "req_1",
        200,
        1.5,
    )
    assert _timestamp(line).utcoffset() is not None


def test_a_traceback_is_one_field_of_one_line() -> None:
    text = JsonFormatter().format(
        _record(
            "imagegate.server", "unexpected error (request_id=%s)", "req_2", level=logging.ERROR, exc=True
        )
    )
    assert "\n" not in text
    line = json.loads(text)
    assert line["level"] == "error" and line["message"] == "unexpected error (request_id=req_2)"
    assert "Traceback" in line["exc"] and "RuntimeError: boom" in line["exc"]


def test_a_gateway_process_writes_only_json_lines() -> None:
    """``configure_logging`` (each worker) and the uvicorn configuration ``serve`` passes: every
    line on stderr parses as JSON, uvicorn's own records included."""
    script = """
import logging, logging.config
from imagegate.server.logconfig import configure_logging, uvicorn_log_config
logging.config.dictConfig(uvicorn_log_config("info"))
configure_logging("info")
logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
logging.getLogger("imagegate.server.access").info('{"event":"request","status":404}')
logging.getLogger("imagegate").warning("imagegate: OPEN MODE - %s", "loopback only")
try:
    {}["missing"]
except KeyError:
    logging.getLogger("imagegate.server").exception("unexpected error (request_id=%s)", "req_3")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["logger"] for line in lines] == [
        "uvicorn.error", "imagegate.server.access", "imagegate", "imagegate.server",
    ]  # fmt: skip
    assert lines[0]["message"] == "Started server process [42]"
    assert lines[1]["status"] == 404 and "message" not in lines[1]
    assert "KeyError" in lines[3]["exc"]
    assert all(_timestamp(line) and line["level"] for line in lines)


def test_the_uvicorn_configuration_formats_with_the_json_formatter() -> None:
    config = uvicorn_log_config("warning")
    assert config["formatters"]["default"]["()"] == "imagegate.server.logconfig.JsonFormatter"
    assert config["loggers"]["uvicorn"]["level"] == "WARNING"


async def test_records_logged_while_serving_a_request_carry_its_request_id() -> None:
    """A failed upstream attempt is logged by the attempt loop, which knows nothing of the
    gateway's request: without the request id on that line an operator cannot tell which
    request it belonged to. Every record logged while a request is served carries its id."""
    app = build_app(GatewayState())

    @app.get("/work")
    async def work(request: Request) -> Response:
        logging.getLogger("imagegate.upstream").info("upstream attempt 1 deployment=east status=429")
        return Response("done")

    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(self.format(record))

    handler = Keep()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    upstream = logging.getLogger("imagegate.upstream")
    upstream.addHandler(handler)
    upstream.setLevel(logging.INFO)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get("/work", headers={"x-request-id": "trace-77"})).text == "done"
        upstream.info("outside any request")
    finally:
        upstream.removeHandler(handler)
        upstream.setLevel(logging.NOTSET)
    inside, outside = (json.loads(line) for line in kept)
    assert inside["request_id"] == "trace-77" and inside["message"].startswith("upstream attempt")
    assert "request_id" not in outside


def test_uvicorn_does_not_log_a_request_the_shutdown_cut_off_as_an_exception() -> None:
    """A request whose response had started when the graceful shutdown cancelled it ends in a
    CancelledError that reaches uvicorn: it logged "Exception in ASGI application" with a
    traceback for each, at ERROR, though nothing failed (the gateway logs one warning line for
    it, ``ErrorMiddleware``). Any other exception uvicorn reports is still logged."""
    script = """
import asyncio, logging, logging.config
from imagegate.server.logconfig import uvicorn_log_config
logging.config.dictConfig(uvicorn_log_config("info"))
log = logging.getLogger("uvicorn.error")
for exc in (asyncio.CancelledError("Task cancelled, timeout graceful shutdown exceeded"), KeyError("x")):
    try:
        raise exc
    except BaseException as caught:
        log.error("Exception in ASGI application\\n", exc_info=caught)
log.info("Application shutdown complete.")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("error", "Exception in ASGI application\n"),
        ("info", "Application shutdown complete."),
    ]
    assert "KeyError" in lines[0]["exc"] and "CancelledError" not in done.stderr

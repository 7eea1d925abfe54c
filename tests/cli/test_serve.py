"""``imagegate serve`` before uvicorn starts: every start-up problem is one clear message and exit
code 2 (1 when a service is down), never a traceback, and the server is not started.

uvicorn is replaced by a recorder of its configuration, and the port is not bound: these tests
check what happens before it would run (``tests/e2e/test_serve_listening.py`` runs it).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from imagegate.cli import listen
from imagegate.cli.main import app

OPEN_MODE_ENV = {"AZURE_OPENAI_ENDPOINT": "", "IMAGEGATE_CONFIG": "", "IMAGEGATE_ADMIN_KEY": ""}


@pytest.fixture(autouse=True)
def environ_restored() -> Iterator[None]:
    """``serve`` exports variables for its workers; do not let them leak into other tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What uvicorn would have been given: its ``Config`` (as a dict), the environment the workers
    would inherit and the banner."""
    calls: list[dict[str, Any]] = []

    def run(config: uvicorn.Config, sock: socket.socket, banner: str) -> None:
        calls.append({**vars(config), "environ": dict(os.environ), "banner": banner})

    monkeypatch.setattr(listen, "bind_socket", lambda host, port: socket.socket())  # never bound
    monkeypatch.setattr(listen, "run_announced", run)
    return calls


def _serve(tmp_path: Path, *args: str, **env: str) -> Any:
    environ = {**OPEN_MODE_ENV, "IMAGEGATE_DATA_DIR": str(tmp_path / "data"), **env}
    return CliRunner().invoke(app, ["serve", "--port", "45999", *args], env=environ)


def test_config_and_environment_problems_are_listed_together_with_exit_2(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployments:\n  - name: a\n    endpoint: notaurl\n    model: nope\n")
    result = _serve(tmp_path, "--config", str(bad), IMAGEGATE_URL_TTL_S="soon", IMAGEGATE_LEDGER_BATCH="0")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    expected = ("notaurl", "'nope' is not in the catalog", "no credentials")
    for fragment in (*expected, "IMAGEGATE_URL_TTL_S='soon'", "IMAGEGATE_LEDGER_BATCH='0'"):
        assert fragment in result.stderr, fragment
    assert result.stderr.count("error") == 1  # one message
    assert "imagegate gateway on" not in result.stdout  # no banner for a server that never ran
    assert started == []


def test_open_mode_on_a_public_address_is_refused_before_starting(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    result = _serve(tmp_path, "--host", "0.0.0.0")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "bound to 0.0.0.0 with no admin key and no virtual keys" in result.stderr
    assert "IMAGEGATE_ADMIN_KEY" in result.stderr
    assert started == []


def test_a_public_address_with_an_admin_key_starts(tmp_path: Path, started: list[dict[str, Any]]) -> None:
    result = _serve(tmp_path, "--host", "0.0.0.0", IMAGEGATE_ADMIN_KEY="admin-key-for-serve-tests")
    assert result.exit_code == 0, result.output
    assert [call["host"] for call in started] == ["0.0.0.0"]
    [call] = started
    assert call["log_config"]["formatters"]["default"]["()"].endswith("logconfig.JsonFormatter")
    assert call["access_log"] is False  # the gateway's own access lines, not uvicorn's
    assert call["banner"].startswith("imagegate gateway on http://0.0.0.0:45999\n")
    assert "imagegate gateway on" not in result.stdout  # printed once it listens, not before
    assert (tmp_path / "data" / "imagegate.db").exists()  # migrated once, before any worker


def test_a_public_address_with_a_virtual_key_in_the_database_starts(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    env = {**OPEN_MODE_ENV, "IMAGEGATE_DATA_DIR": str(tmp_path / "data")}
    created = CliRunner().invoke(app, ["keys", "create", "--name", "team"], env=env)
    assert created.exit_code == 0, created.output
    result = _serve(tmp_path, "--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert len(started) == 1


def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    url = "postgresql+asyncpg://gate:s3cret-db-password@127.0.0.1:1/imagegate"
    result = _serve(tmp_path, IMAGEGATE_DATABASE_URL=url)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "s3cret-db-password" not in result.output
    assert "127.0.0.1:1" in result.stderr
    assert started == []


def test_a_bad_database_url_is_a_configuration_error(tmp_path: Path, started: list[dict[str, Any]]) -> None:
    result = _serve(tmp_path, IMAGEGATE_DATABASE_URL="mysql://u:pw@host/db")
    assert result.exit_code == 2, result.output
    assert "unsupported driver" in result.stderr and "pw@" not in result.output
    assert started == []


def test_the_graceful_shutdown_timeout_reaches_uvicorn_with_the_ledger_drain_inside_it(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    """Kubernetes kills the pod after its grace period (30 s by default): a shutdown must end
    before. uvicorn waits for requests still running for most of the time, then cancels them;
    the rest is the app's, to record those and write the ledger's queue (IMAGEGATE_LEDGER_DRAIN_S,
    which the workers read)."""
    assert _serve(tmp_path).exit_code == 0
    assert _serve(tmp_path, "--timeout-graceful-shutdown", "10").exit_code == 0
    assert _serve(tmp_path, "--timeout-graceful-shutdown", "90").exit_code == 0
    shares = [
        (call["timeout_graceful_shutdown"], call["environ"]["IMAGEGATE_LEDGER_DRAIN_S"]) for call in started
    ]
    assert shares == [(20.0, "5"), (8.0, "2"), (85.0, "5")]  # 25 s by default; a fifth, at most 5 s


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "3601", "soon"])
def test_a_bad_graceful_shutdown_timeout_names_the_option_with_exit_2(
    tmp_path: Path, started: list[dict[str, Any]], value: str
) -> None:
    result = _serve(tmp_path, "--timeout-graceful-shutdown", value)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # typer's box, unwrapped
    assert f"--timeout-graceful-shutdown: '{value}' is not allowed" in said
    assert "a number of seconds above 0, at most 3600" in said
    assert started == []


def test_a_port_in_use_is_one_line_and_exit_1_without_a_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[object] = []
    monkeypatch.setattr(listen, "run_announced", lambda *args: ran.append(args))
    environ = {**OPEN_MODE_ENV, "IMAGEGATE_DATA_DIR": str(tmp_path / "data")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)], env=environ)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = [ln for ln in result.stderr.splitlines() if "error" in ln]
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: address already in use")
    assert "--port" in line
    assert "imagegate gateway on" not in result.stdout
    assert ran == []  # uvicorn never started


def test_a_host_that_is_not_an_address_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listen, "run_announced", lambda *args: None)
    environ = {**OPEN_MODE_ENV, "IMAGEGATE_DATA_DIR": str(tmp_path / "data"), "IMAGEGATE_ADMIN_KEY": "k" * 20}
    result = CliRunner().invoke(
        app, ["serve", "--host", "no-such-host.invalid", "--port", "45999"], env=environ
    )
    assert result.exit_code == 2, result.output
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())
    assert "--host: 'no-such-host.invalid' is not an address to listen on" in said


AZURE = """
deployments:
  - name: swc
    endpoint: https://swc.openai.azure.com
    model: gpt-image-1
    api_key: not-a-real-key
    rpm: 6
"""
SHARED_ROUTING = "routing_state:\n  backend: redis\n  url: redis://127.0.0.1:6379/0\n"
NO_REDIS = {"IMAGEGATE_REDIS_URL": "", "IMAGEGATE_DATABASE_URL": ""}
ADMIN = {"IMAGEGATE_ADMIN_KEY": "admin-key-for-serve-tests"}
RPM_WARNING = "each worker counts a key's rpm on its own"
ROUTING_WARNING = "each worker keeps its own quota window"


def _config(tmp_path: Path, text: str = AZURE) -> str:
    path = tmp_path / "imagegate.yaml"
    path.write_text(text)
    return str(path)


def test_workers_without_redis_are_warned_once_each_and_still_start(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    result = _serve(tmp_path, "--config", _config(tmp_path), "--workers", "4", **NO_REDIS, **ADMIN)
    assert result.exit_code == 0, result.output
    assert [call["workers"] for call in started] == [4]
    err = result.stderr
    assert err.count(RPM_WARNING) == 1 and err.count(ROUTING_WARNING) == 1
    assert "up to 4×N in all" in err and "Set IMAGEGATE_REDIS_URL" in err
    assert "up to 4× a deployment's rpm" in err and "routing_state: {backend: redis}" in err
    assert "admin-key-for-serve-tests" not in result.output


def test_one_worker_or_shared_state_is_not_warned(tmp_path: Path, started: list[dict[str, Any]]) -> None:
    result = _serve(tmp_path, "--config", _config(tmp_path), **NO_REDIS, **ADMIN)
    assert result.exit_code == 0 and "warning" not in result.stderr
    shared = _config(tmp_path, AZURE + SHARED_ROUTING)
    redis = {**NO_REDIS, "IMAGEGATE_REDIS_URL": "redis://127.0.0.1:6379/0"}
    result = _serve(tmp_path, "--config", shared, "--workers", "4", **redis, **ADMIN)
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert [call["workers"] for call in started] == [1, 4]


def test_the_rpm_warning_is_for_a_gateway_that_checks_keys(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    # no admin key and no key: open mode (loopback), no key and so no rpm is ever checked
    result = _serve(tmp_path, "--config", _config(tmp_path), "--workers", "2", **NO_REDIS)
    assert result.exit_code == 0, result.output
    assert RPM_WARNING not in result.stderr and result.stderr.count(ROUTING_WARNING) == 1
    env = {**OPEN_MODE_ENV, **NO_REDIS, "IMAGEGATE_DATA_DIR": str(tmp_path / "data")}
    created = CliRunner().invoke(app, ["keys", "create", "--name", "team", "--rpm", "30"], env=env)
    assert created.exit_code == 0, created.output
    result = _serve(tmp_path, "--config", _config(tmp_path), "--workers", "2", **NO_REDIS)
    assert result.exit_code == 0 and result.stderr.count(RPM_WARNING) == 1
    assert len(started) == 2


def test_the_built_in_emulator_needs_no_shared_routing_state(
    tmp_path: Path, started: list[dict[str, Any]]
) -> None:
    # zero config: each worker runs its own emulator, in-process, with quotas of its own
    result = _serve(tmp_path, "--workers", "3", **NO_REDIS, **ADMIN)
    assert result.exit_code == 0, result.output
    assert ROUTING_WARNING not in result.stderr and result.stderr.count(RPM_WARNING) == 1
    assert [call["workers"] for call in started] == [3]

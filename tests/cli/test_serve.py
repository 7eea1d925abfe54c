"""``imagegate serve`` before uvicorn starts: every start-up problem is one clear message and exit
code 2 (1 when a service is down), never a traceback, and the server is not started.

uvicorn is replaced by a recorder: these tests check what happens before it would run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

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
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
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
    assert "imagegate gateway on http://0.0.0.0:45999" in result.stdout
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

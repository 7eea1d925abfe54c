"""``imagegate emulator`` before uvicorn serves: the port is bound first, a taken one is one clear
line and a non-zero exit without a banner, and the banner goes to uvicorn's start-up
(``tests/e2e/test_emulator_cli.py`` runs it as a real process)."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from imagegate.cli import listen
from imagegate.cli.main import app


def test_a_port_in_use_is_one_line_and_exit_1_without_a_banner(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[object] = []
    monkeypatch.setattr(listen, "run_announced", lambda *args: ran.append(args))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["emulator", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = [ln for ln in result.stderr.splitlines() if "error" in ln]
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: address already in use")
    assert "--port" in line
    assert "emulator on" not in result.stdout
    assert ran == []  # uvicorn never started


def test_the_banner_is_handed_to_the_server_on_the_bound_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def run(config: uvicorn.Config, sock: socket.socket, banner: str) -> None:
        calls.append({"config": config, "port": sock.getsockname()[1], "banner": banner})

    monkeypatch.setattr(listen, "run_announced", run)
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(app, ["emulator", "--port", str(port), "--time-scale", "0"])
    assert result.exit_code == 0, result.output
    [call] = calls
    assert call["port"] == port
    assert call["banner"].startswith(f"Azure OpenAI image emulator on http://127.0.0.1:{port} (time scale 0")
    assert "emulator on" not in result.stdout  # printed once it listens, not before
    assert call["config"].workers == 1


@pytest.mark.parametrize("port", ["0", "70000"])
def test_a_port_out_of_range_names_the_option(port: str) -> None:
    result = CliRunner().invoke(app, ["emulator", "--port", port])
    assert result.exit_code == 2, result.output
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())
    assert "--port" in said and "Traceback" not in result.output

"""``imagegate doctor`` prints the routing status table after the probe table."""

from __future__ import annotations

from typer.testing import CliRunner

from imagegate.cli.main import app
from imagegate.cli.status_table import COLUMNS

ENV = {"IMAGEGATE_EMULATOR_TIME_SCALE": "0", "AZURE_OPENAI_ENDPOINT": "", "IMAGEGATE_CONFIG": ""}


def test_doctor_prints_the_routing_status_table() -> None:
    result = CliRunner().invoke(app, ["doctor"], env=ENV)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "routing status" in out
    header = next(line for line in out.splitlines() if "deployment" in line and "breaker" in line)
    for column in COLUMNS:
        assert column in header
    row = next(line for line in out.splitlines() if "gpt-image-1-swc" in line and "closed" in line)
    assert "60/60" in row and "0/10 per 10s" in row and "100%" in row

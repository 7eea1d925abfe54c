"""``imagegate generate`` reports fallbacks, per-image provenance and degradation (built-in
emulator, in-process, instant latencies: the deadline check uses the catalog's estimates)."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from imagegate.cli.main import app

ENV = {"IMAGEGATE_EMULATOR_TIME_SCALE": "0", "AZURE_OPENAI_ENDPOINT": "", "IMAGEGATE_CONFIG": ""}


def test_degraded_result_in_json_and_text(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["generate", "a fox", "-o", str(tmp_path / "fox.png"), "--quality", "high", "--deadline", "10"]
    result = runner.invoke(app, [*args, "--degrade", "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["degraded"] is True and data["fallback_from"] is None
    (change,) = data["change_details"]
    assert (change["field"], change["old"], change["new"]) == ("quality", "high", "medium")
    assert change["reason"].startswith("degraded: deadline")
    assert (
        data["images"][0]["model"] == "gpt-image-1" and data["images"][0]["deployment"] == data["deployment"]
    )

    text = runner.invoke(app, [*args, "--degrade"], env=ENV)
    assert text.exit_code == 0, text.output
    assert "degraded: quality lowered to meet the deadline" in text.stderr
    assert "changed: quality: 'high' -> 'medium' (degraded: deadline" in text.stderr


def test_deadline_too_short_without_degrade_is_one_line(tmp_path: Path) -> None:
    args = ["generate", "a fox", "-o", str(tmp_path / "fox.png"), "--quality", "high", "--deadline", "10"]
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == 1
    assert "needs ~24.0 s, 10.0 s left; allow degrade=True" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "fox.png").exists()


def test_bad_fallback_mode_exits_2(tmp_path: Path) -> None:
    args = ["generate", "a fox", "-o", str(tmp_path / "fox.png"), "--fallback", "sometimes"]
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == 2
    assert "fallback='sometimes' is not allowed: one of any, same-model, none" in result.stderr

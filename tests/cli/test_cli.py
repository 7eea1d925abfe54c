"""The CLI through typer's runner, on the built-in emulator (in-process, instant latencies)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from PIL import Image
from typer.testing import CliRunner

from imagegate.cli.main import app

ENV = {"IMAGEGATE_EMULATOR_TIME_SCALE": "0", "AZURE_OPENAI_ENDPOINT": "", "IMAGEGATE_CONFIG": ""}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_generate_writes_the_file_and_reports(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    result = runner.invoke(
        app, ["generate", "a red fox in the snow", "-o", str(out), "--quality", "high"], env=ENV
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (1024, 1024)
    assert str(out) in result.stdout
    assert "built-in emulator" in result.stderr and result.stderr.count("built-in emulator") == 1
    assert "cost $0.166" in result.stderr and "gpt-image-1" in result.stderr


def test_generate_json_and_numbered_files(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "fox.jpg"
    args = [
        "generate",
        "two foxes",
        "-o",
        str(out),
        "--n",
        "2",
        "--quality",
        "low",
        "--format",
        "jpeg",
        "--json",
    ]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["files"] == [str(tmp_path / "fox-1.jpg"), str(tmp_path / "fox-2.jpg")]
    assert data["cost_estimated"] is False and float(data["cost_usd"]) > 0.02
    assert data["attempts"][0]["outcome"] == "ok"
    assert all(Path(f).exists() for f in data["files"])


def test_bad_input_is_one_line_and_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["generate", "x", "--size", "999x999", "-o", str(tmp_path / "x.png")], env=ENV
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error")]
    assert "size='999x999'" in line and "1536x1024" in line
    assert not (tmp_path / "x.png").exists()


def test_config_error_lists_every_problem(runner: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("deployments:\n  - name: a\n    model: nope\n")
    result = runner.invoke(app, ["generate", "x", "--config", str(cfg)], env=ENV)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "endpoint" in result.stderr and "nope" in result.stderr and "credentials" in result.stderr


def test_edit_with_mask(runner: CliRunner, tmp_path: Path) -> None:
    src, mask, out = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
    Image.new("RGB", (1024, 1024), (10, 120, 30)).save(src)
    m = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    m.paste((0, 0, 0, 0), (0, 0, 512, 512))
    m.save(mask)
    result = runner.invoke(
        app,
        ["edit", "a cat", "--image", str(src), "--mask", str(mask), "-o", str(out), "--quality", "low"],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.convert("RGB").getpixel((1000, 1000)) == (10, 120, 30)


def test_edit_refuses_a_non_image(runner: CliRunner, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.png"
    bogus.write_bytes(b"this is text")
    result = runner.invoke(app, ["edit", "x", "--image", str(bogus)], env=ENV)
    assert result.exit_code == 2 and "image[0]" in result.stderr


def test_price(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        ["price", "--model", "gpt-image-1", "--size", "1024x1024", "--quality", "high", "--n", "4"],
        env=ENV,
    )
    assert result.exit_code == 0
    assert result.stdout.strip() == "$0.668"
    assert "4 × $0.167" in result.stderr
    for quality, figure in (("low", "$0.011"), ("medium", "$0.042")):
        out = runner.invoke(
            app, ["price", "-m", "gpt-image-1", "--size", "1024x1024", "--quality", quality], env=ENV
        )
        assert out.stdout.strip() == figure


def test_models_lists_the_catalog(runner: CliRunner) -> None:
    result = runner.invoke(app, ["models", "--json"], env=ENV)
    names = {row["model"] for row in orjson.loads(result.stdout)}
    assert names == {
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
        "dall-e-3",
        "dall-e-2",
    }
    table = runner.invoke(app, ["models"], env=ENV)
    assert table.exit_code == 0 and "gpt-image-1.5" in table.stdout


def test_doctor_on_the_emulator(runner: CliRunner) -> None:
    result = runner.invoke(app, ["doctor"], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.stdout.count(" ok ") == 5


def test_doctor_fails_on_an_unreachable_deployment(runner: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "deployments:\n  - {name: d, endpoint: 'http://127.0.0.1:9', model: gpt-image-1, api_key: k}\n"
    )
    result = runner.invoke(app, ["doctor", "--config", str(cfg)], env=ENV)
    assert result.exit_code == 1 and "FAIL" in result.stdout and "unreachable" in result.stdout


def test_price_of_a_configured_deployment_uses_its_override(runner: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "deployments:\n  - {name: cheap, endpoint: 'https://x', model: gpt-image-1, api_key_env: KEY,"
        " price_override: {image_output_per_1m: '20'}}\n"
    )
    result = runner.invoke(
        app,
        ["price", "-m", "cheap", "--size", "1024x1024", "--quality", "high", "-c", str(cfg)],
        env={**ENV, "KEY": "k"},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "$0.083"  # 4160 tokens at $20/1M

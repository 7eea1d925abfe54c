"""The YAML config: defaults, a good file, and one error listing every problem; the CLI banner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegate.cli.main import app as cli
from imagegate.emulator import (
    DeploymentSpec,
    EmulatorConfig,
    EmulatorConfigError,
    default_emulator_config,
    load_emulator_config,
)
from imagegate.emulator.banner import describe


def test_defaults() -> None:
    cfg = default_emulator_config()
    assert [(d.name, d.model, d.region) for d in cfg.deployments] == [
        ("gpt-image-1", "gpt-image-1", "eastus2"),
        ("gpt-image-1-swc", "gpt-image-1", "swedencentral"),
        ("gpt-image-1-mini", "gpt-image-1-mini", "eastus2"),
        ("gpt-image-2", "gpt-image-2", "eastus2"),
        ("dall-e-3", "dall-e-3", "eastus"),
        ("gpt-4o", "gpt-4o", "eastus2"),
    ]
    assert all(d.api_keys == ("emulator-key",) for d in cfg.deployments)
    assert load_emulator_config(None) == cfg
    assert "emulator-key" not in repr(cfg)  # keys stay out of repr


def test_good_file(tmp_path: Path) -> None:
    path = tmp_path / "emu.yaml"
    path.write_text(
        """
time_scale: 0
deployments:
  - name: img
    model: gpt-image-1.5
    region: westus3
    rpm: 120
    window_s: 1
    api_keys: [k1, k2]
    entra: true
    api_versions: [2025-04-01-preview]
    latency: {median_s: 2, p95_s: 5}
    blocklist: []
    faults:
      - {kind: status, status: 429, count: 3, retry_after_s: 2}
""",
        encoding="utf-8",
    )
    cfg = load_emulator_config(path)
    dep = cfg.deployments[0]
    assert (dep.model, dep.per_window, dep.api_keys, dep.terms, cfg.time_scale) == (
        "gpt-image-1.5",
        2,
        ("k1", "k2"),
        (),
        0,
    )
    assert dep.faults[0].count == 3


def test_bad_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        """
time_scale: -1
deployments:
  - name: a
    model: gpt-9
    window_s: 5
    rpm: 0
  - name: a
    model: dall-e-3
    faults: [{kind: meltdown}]
    image_bytes: huge
    api_versions: [1999-01-01]
""",
        encoding="utf-8",
    )
    with pytest.raises(EmulatorConfigError) as err:
        load_emulator_config(path)
    text = str(err.value)
    for fragment in (
        "time_scale: -1",
        "deployments[0].model: 'gpt-9'",
        "deployments[0].window_s: 5",
        "deployments[0].rpm: 0",
        "deployments[1].name: 'a': duplicate",
        "deployments[1].faults[0].kind: 'meltdown'",
        "deployments[1].image_bytes: 'huge'",
        "deployments[1].api_versions",
    ):
        assert fragment in text, (fragment, text)
    assert len(err.value.problems) == 8
    assert str(path) in text


@pytest.mark.parametrize(
    ("content", "fragment"), [("deployments: [", "not valid YAML"), ("time_scale: 1", "deployments")]
)
def test_unreadable_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EmulatorConfigError, match=fragment):
        load_emulator_config(path)
    with pytest.raises(EmulatorConfigError, match="cannot read"):
        load_emulator_config(tmp_path / "missing.yaml")


def test_banner_names_deployments_key_and_an_example() -> None:
    text = describe(default_emulator_config(), "http://127.0.0.1:8081", 1.0)
    assert "gpt-image-1-swc" in text and "Entra" in text
    assert "api key: emulator-key" in text
    assert "curl -s 'http://127.0.0.1:8081/openai/deployments/gpt-image-1/images/generations" in text


def test_banner_never_prints_a_configured_key() -> None:
    cfg = EmulatorConfig(
        deployments=(DeploymentSpec(name="d", model="gpt-image-1", api_keys=("s3cr3t-value",)),)
    )
    text = describe(cfg, "http://127.0.0.1:1", 0)
    assert "s3cr3t-value" not in text and "<your configured key>" in text


def test_cli_rejects_a_bad_config_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("deployments: [{name: x, model: nope, rpm: -1}]", encoding="utf-8")
    result = CliRunner().invoke(cli, ["emulator", "--config", str(path)])
    assert result.exit_code == 2
    assert "2 emulator configuration problem(s)" in result.output


def test_the_documented_examples_load(tmp_path: Path) -> None:
    """docs/emulator.md's configuration and fault examples are valid (the docs stay honest)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text(encoding="utf-8")
    blocks = doc.split("```yaml\n")[1:]
    assert len(blocks) >= 2
    config_text = blocks[0].split("```")[0]
    faults_text = blocks[1].split("```")[0]
    path = tmp_path / "doc.yaml"
    path.write_text(config_text, encoding="utf-8")
    cfg = load_emulator_config(path)
    assert cfg.deployments[0].name == "gpt-image-1"
    faults_yaml = "deployments:\n  - name: d\n    model: gpt-image-1\n" + "".join(
        "    " + line + "\n" for line in faults_text.splitlines()
    )
    path.write_text(faults_yaml, encoding="utf-8")
    kinds = {f.kind for f in load_emulator_config(path).deployments[0].faults}
    assert kinds == {
        "status",
        "outage",
        "hang",
        "slow_body",
        "stream_error",
        "drop_mid_body",
        "malformed_json",
        "usage_missing",
        "retry_after_missing",
    }

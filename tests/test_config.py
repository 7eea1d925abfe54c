from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from imagegate.config import ApiKeyAuth, EntraAuth, Secret
from imagegate.config_load import load
from imagegate.errors import ConfigError, InvalidRequest

TODAY = dt.date(2026, 11, 24)
KEY = "sk-very-secret-azure-key-123"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imagegate.yaml"
    path.write_text(text)
    return path


def test_zero_config_uses_the_emulator() -> None:
    cfg = load(None, {}, today=TODAY)
    assert cfg.emulated
    assert {d.name for d in cfg.deployments} >= {"gpt-image-1", "gpt-image-1-swc", "gpt-image-1-mini"}
    assert [d.name for d in cfg.deployments_for(None)] == ["gpt-image-1", "gpt-image-1-swc"]
    assert cfg.warnings == ()  # emulated: retirement does not apply


def test_retired_model_warns_with_injected_date(tmp_path: Path) -> None:
    path = write(
        tmp_path, "deployments:\n  - {name: old, endpoint: 'https://a', model: dall-e-3, api_key: k}\n"
    )
    (warning,) = load(path, {}, today=TODAY).warnings
    assert "old" in warning and "retire" in warning
    assert load(path, {}, today=dt.date(2026, 1, 1)).warnings == ()


def test_from_environment() -> None:
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/",
        "AZURE_OPENAI_API_KEY": KEY,
        "AZURE_OPENAI_DEPLOYMENT": "gpt-image-1",
        "AZURE_OPENAI_API_VERSION": "2025-04-01-preview",
    }
    cfg = load(None, env, today=TODAY)
    (dep,) = cfg.deployments
    assert not cfg.emulated
    assert dep.endpoint == "https://res.openai.azure.com"
    assert dep.model == "gpt-image-1"
    assert isinstance(dep.auth, ApiKeyAuth) and dep.auth.key.reveal() == KEY


def test_environment_without_key_uses_entra() -> None:
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
        "IMAGEGATE_DEPLOYMENT": "img",
        "IMAGEGATE_MODEL": "gpt-image-1-mini",
    }
    (dep,) = load(None, env, today=TODAY).deployments
    assert isinstance(dep.auth, EntraAuth)
    assert dep.name == "img" and dep.model == "gpt-image-1-mini"
    assert dep.api_version == "2025-04-01-preview"  # from the catalog


def test_file_with_everything(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
deployments:
  - name: east
    endpoint: https://east.openai.azure.com
    deployment: gpt-image-1
    model: gpt-image-1
    region: eastus2
    api_key_env: EAST_KEY
    rpm: 9
    concurrency: 2
    priority: 1
    weight: 2
    tags: [prod]
    timeouts: {{connect_s: 3, read_s: 200}}
    price_override: {{image_output_per_1m: "36"}}
  - name: sweden
    endpoint: https://swc.openai.azure.com
    model: gpt-image-1
    route: v1
    auth: {{type: entra, client_id: abc}}
  - name: platform
    kind: openai
    model: gpt-image-1-mini
    api_key: {KEY}
models:
  default: [east, sweden]
  cheap: [platform]
retry: {{max_attempts: 5, retry_sent_timeouts: true}}
""",
    )
    cfg = load(path, {"EAST_KEY": KEY, "IMAGEGATE_TRANSLATE": "true"}, today=TODAY)
    east, sweden, platform = cfg.deployments
    assert east.upstream_name == "gpt-image-1" and east.rpm == 9 and east.timeouts.read_s == 200
    assert east.price_override is not None and str(east.price_override.image_output_per_1m) == "36"
    assert sweden.route == "v1" and isinstance(sweden.auth, EntraAuth) and sweden.api_version is None
    assert platform.kind == "openai" and platform.endpoint == "https://api.openai.com"
    assert cfg.retry.max_attempts == 5 and cfg.retry.retry_sent_timeouts
    assert cfg.translate
    assert [d.name for d in cfg.deployments_for("cheap")] == ["platform"]
    assert [d.name for d in cfg.deployments_for("gpt-image-1")] == ["east", "sweden"]
    assert [d.name for d in cfg.deployments_for("sweden")] == ["sweden"]
    with pytest.raises(InvalidRequest, match="cheap"):
        cfg.deployments_for("nope")


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
deployments:
  - name: a
    endpoint: ftp://x
    model: gpt-image-99
    api_key_env: MISSING
    rpm: -1
    route: sideways
    colour: blue
  - name: a
    endpoint: https://b
    model: gpt-image-1
    api_key: k
models:
  default: [a, ghost]
retry: {max_attempts: 0}
surprise: 1
""",
    )
    with pytest.raises(ConfigError) as info:
        load(path, {}, today=TODAY)
    text = str(info.value)
    for fragment in (
        "ftp://x",
        "gpt-image-99",
        "MISSING",
        "rpm",
        "sideways",
        "colour",
        "used twice",
        "ghost",
        "max_attempts",
        "surprise",
    ):
        assert fragment in text, fragment


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml", {})


def test_secrets_never_in_repr_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = write(
        tmp_path,
        f"deployments:\n  - name: a\n    endpoint: https://a\n    model: gpt-image-1\n    api_key: {KEY}\n",
    )
    cfg = load(path, {}, today=TODAY)
    logging.getLogger("imagegate.test").info("config %r %s", cfg, cfg.deployments[0])
    assert KEY not in repr(cfg) and KEY not in str(cfg.deployments[0])
    assert KEY not in repr(Secret(KEY)) and KEY not in f"{Secret(KEY)}"
    assert KEY not in caplog.text
    assert cfg.deployments[0].auth == ApiKeyAuth(key=Secret(KEY))


def test_environment_problems_say_which_variable() -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_DEPLOYMENT"):
        load(None, {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"})
    with pytest.raises(ConfigError, match="IMAGEGATE_MODEL"):
        load(
            None,
            {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "prod-img"},
        )


def test_a_deployment_without_credentials_still_has_its_numbers_checked(tmp_path: Path) -> None:
    """Every problem at once: a deployment whose credentials are missing is still read through,
    so its bad rpm, concurrency and weight are reported with the missing key, not after it."""
    path = write(
        tmp_path,
        "deployments:\n  - name: a\n    endpoint: https://a\n    model: gpt-image-1\n"
        "    rpm: -3\n    concurrency: lots\n    weight: heavy\n",
    )
    with pytest.raises(ConfigError) as info:
        load(path, {}, today=TODAY)
    problems = info.value.problems
    assert any("no credentials" in p for p in problems)
    assert any(p.startswith("deployments[0] (a).rpm: -3") for p in problems)
    assert any(p.startswith("deployments[0] (a).concurrency: 'lots'") for p in problems)
    assert any(p.startswith("deployments[0] (a).weight: 'heavy'") for p in problems)

"""The routing section of the configuration: strategies, region allow-lists, fallbacks, windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegate.config import GroupRouting, ImageGateConfig
from imagegate.config_load import load
from imagegate.errors import ConfigError
from imagegate.policy.fallback import fallback_order
from imagegate.routing import Scheduler

DEPLOYMENTS = """
deployments:
  - {name: eu1, endpoint: https://a.openai.azure.com, model: gpt-image-1, api_key: k, region: swedencentral,
     rpm: 9, rpm_window_s: 1}
  - {name: us1, endpoint: https://b.openai.azure.com, model: gpt-image-1, api_key: k, region: eastus2, rpm: 6}
  - {name: mini, endpoint: https://b.openai.azure.com, model: gpt-image-1-mini, api_key: k, region: eastus2}
models:
  default: [eu1, us1]
  cheap: [mini]
"""


def load_text(tmp_path: Path, text: str) -> ImageGateConfig:
    path = tmp_path / "imagegate.yaml"
    path.write_text(text)
    return load(path, {})


def test_routing_section(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        DEPLOYMENTS
        + """
routing:
  default: {strategy: least_latency, regions: [swedencentral], fallbacks: [cheap]}
  cheap: {strategy: weighted}
""",
    )
    assert cfg.routing["default"] == GroupRouting(
        strategy="least_latency", regions=("swedencentral",), fallbacks=("cheap",)
    )
    assert cfg.routing["cheap"].regions is None
    windows = {d.name: d.rpm_window_s for d in cfg.deployments}
    assert windows == {"eu1": 1.0, "us1": 10.0, "mini": 10.0}


def test_routing_problems_are_all_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(
            tmp_path,
            DEPLOYMENTS
            + """
routing:
  default: {strategy: fastest, regions: swedencentral, fallbacks: [default, nope], colour: red}
  unknown: {}
""",
        )
    text = "\n".join(info.value.problems)
    assert "routing.default.strategy: 'fastest' is not one of priority, weighted" in text
    assert "routing.default.regions: 'swedencentral' is not a list of strings" in text
    assert "routing.default.fallbacks: 'default' is not another logical model" in text
    assert "routing.default.fallbacks: 'nope' is not another logical model" in text
    assert "colour" in text
    assert "routing.unknown: 'unknown' is not a logical model" in text


def test_bad_window(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rpm_window_s"):
        load_text(tmp_path, DEPLOYMENTS.replace("rpm_window_s: 1", "rpm_window_s: -1"))


def test_scheduler_from_config_and_fallback_order(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        DEPLOYMENTS
        + """
routing:
  default: {regions: [swedencentral], fallbacks: [cheap]}
  cheap: {fallbacks: [default]}
""",
    )
    assert fallback_order(cfg, "default") == ("default", "cheap")
    assert fallback_order(cfg, "cheap") == ("cheap", "default")
    s = Scheduler.from_config(cfg)
    assert s.policy_for("default").allowed_regions == frozenset({"swedencentral"})
    assert s.policy_for("other").strategy == "priority"


async def test_region_allow_list_applies_in_plans(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, DEPLOYMENTS + "routing:\n  default: {regions: [swedencentral]}\n")
    plan = await Scheduler.from_config(cfg).plan("default", cfg.deployments_for("default"))
    assert plan.names == ("eu1",)
    assert [(e.name, e.code) for e in plan.excluded] == [("us1", "region")]


def test_breaker_settings(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path, DEPLOYMENTS + "breaker: {cooldown_s: 2, consecutive_failures: 0, cooldown_on_429: true}\n"
    )
    assert cfg.breaker.cooldown_s == 2 and cfg.breaker.consecutive_failures == 0
    b = Scheduler.from_config(cfg)._breaker
    assert (b.cooldown_s, b.consecutive_failures, b.cooldown_on_429, b.min_requests) == (2, 0, True, 4)


def test_breaker_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(
            tmp_path,
            DEPLOYMENTS
            + "breaker: {failure_rate: 2, consecutive_failures: -1, cooldown_on_429: 1, colour: red}\n",
        )
    text = "\n".join(info.value.problems)
    for needle in (
        "breaker.failure_rate",
        "breaker.consecutive_failures",
        "breaker.cooldown_on_429",
        "colour",
    ):
        assert needle in text

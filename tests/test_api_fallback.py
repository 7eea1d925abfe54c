"""Fallback chains, n splitting and deadline degradation through the library face, against the
in-process emulator (httpx.ASGITransport). Faults go in through the emulator's admin API; every
image the emulator billed must be on a result."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate import (
    AsyncImageGate,
    ContentFiltered,
    DeadlineExceeded,
    ImageResult,
    InvalidRequest,
    NoDeploymentAvailable,
    PartialImage,
    UpstreamNotSent,
)
from imagegate.config_load import load
from imagegate.emulator import create_emulator_app
from imagegate.emulator.config import DeploymentSpec, EmulatorConfig, LatencySpec

ENDPOINT = "http://emulator.imagegate.invalid"
NAMES = {"g15": "gpt-image-1.5", "g15-swc": "gpt-image-1.5", "g1": "gpt-image-1", "mini": "gpt-image-1-mini",
         "d3": "dall-e-3"}  # fmt: skip

DEPLOYMENT_LINES = "".join(
    f"  - {{name: {n}, endpoint: '{ENDPOINT}', model: {m}, api_key: emulator-key}}\n"
    for n, m in NAMES.items()
)
CONFIG = (
    "deployments:\n"
    + DEPLOYMENT_LINES
    + """
models:
  best: [g15]
  best-eu: [g15-swc]
  std: [g1]
  dalle: [d3]
routing:
  best: {fallbacks: [best-eu, std, gpt-image-1-mini, dalle]}
retry: {max_attempts: 2, initial_backoff_s: 0.1}
"""
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def emulator(fake: FakeTime | None = None, **overrides: dict[str, Any]) -> httpx.AsyncClient:
    deps = tuple(
        DeploymentSpec(name=n, model=m, image_bytes="small", **overrides.get(n, {})) for n, m in NAMES.items()
    )
    timing: dict[str, Any] = {"clock": fake.clock, "sleep": fake.sleep} if fake else {}
    app = create_emulator_app(EmulatorConfig(deployments=deps), time_scale=1 if fake else 0, **timing)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ENDPOINT)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "imagegate.yaml"
    path.write_text(CONFIG)
    return path


GateFactory = Callable[..., AsyncImageGate]


@pytest.fixture
async def make_gate(config_path: Path) -> AsyncIterator[GateFactory]:
    made: list[tuple[AsyncImageGate, httpx.AsyncClient]] = []

    def factory(http: httpx.AsyncClient, fake: FakeTime | None = None) -> AsyncImageGate:
        fake = fake or FakeTime()
        gate = AsyncImageGate(load(config_path, {}), http_client=http, clock=fake.clock, sleep=fake.sleep)
        made.append((gate, http))
        return gate

    yield factory
    for gate, http in made:
        await gate.aclose()
        await http.aclose()


async def outage(http: httpx.AsyncClient, *names: str) -> None:
    for name in names:
        put = await http.put(
            f"/_emulator/deployments/{name}/faults", json=[{"kind": "outage", "mode": "refuse"}]
        )
        assert put.status_code == 200


async def counters(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    listed = (await http.get("/_emulator/deployments")).json()["deployments"]
    return {d["name"]: d["counters"] for d in listed}


async def assert_billed_images_accounted(http: httpx.AsyncClient, *results: ImageResult) -> None:
    billed = {name: c["images_billed"] for name, c in (await counters(http)).items() if c["images_billed"]}
    returned: dict[str, int] = {}
    for result in results:
        for image in result.images:
            assert image.deployment is not None
            returned[image.deployment] = returned.get(image.deployment, 0) + 1
    assert billed == returned


async def test_outage_falls_through_to_the_next_model_with_translated_params(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    await outage(http, "g15", "g15-swc")
    result = await gate.generate("a red fox", model="best", size="1536x1024", quality="high")
    assert (result.model, result.deployment, result.fallback_from) == ("gpt-image-1", "g1", "gpt-image-1.5")
    assert [(i.model, i.deployment) for i in result.images] == [("gpt-image-1", "g1")]
    assert result.served_by == (("gpt-image-1", "g1"),)
    (change,) = result.changes
    assert (change.field, change.old, change.new) == ("model", "gpt-image-1.5", "gpt-image-1 via std")
    assert "after gpt-image-1.5 via best-eu: upstream_unreachable" in change.reason
    assert [(a.deployment, a.outcome) for a in result.attempts] == [
        ("g15", "upstream_unreachable"),
        ("g15", "upstream_unreachable"),
        ("g15-swc", "upstream_unreachable"),
        ("g15-swc", "upstream_unreachable"),
        ("g1", "ok"),
    ]
    assert [a.number for a in result.attempts] == [1, 2, 3, 4, 5]
    assert result.usage is not None and result.usage.output_tokens == 6208  # 1536x1024 high on gpt-image-1
    assert result.cost is not None and result.cost.usd > 0
    await assert_billed_images_accounted(http, result)


async def test_n3_to_dall_e_3_is_three_calls_merged_into_one_result(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    await outage(http, "g15", "g15-swc", "g1", "mini")
    result = await gate.generate("three foxes", model="best", n=3, size="1024x1536", quality="medium")
    assert len(result.images) == 3 and result.served_by == (("dall-e-3", "d3"),)
    assert all(i.format == "png" and (i.width, i.height) == (1024, 1792) for i in result.images)
    assert result.fallback_from == "gpt-image-1.5" and not result.degraded
    changed = {c.field: (c.old, c.new) for c in result.changes}
    assert changed == {
        "model": ("gpt-image-1.5", "dall-e-3 via dalle"),
        "response_format": (None, "b64_json"),
        "n": (3, 1),
        "size": ("1024x1536", "1024x1792"),
        "quality": ("medium", "standard"),
    }
    stats = (await counters(http))["d3"]
    assert stats["requests"]["total"] == 3 and stats["images_billed"] == 3
    assert [a.deployment for a in result.attempts].count("d3") == 3
    one = gate.estimate(model="dall-e-3", size="1024x1792", quality="standard")
    assert result.cost is not None and result.cost.usd == 3 * one.usd > 0
    await assert_billed_images_accounted(http, result)


async def test_fallback_none_fails_with_the_primary_error(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    await outage(http, "g15")
    with pytest.raises(UpstreamNotSent) as info:
        await gate.generate("a fox", model="best", fallback="none")
    assert {a.deployment for a in info.value.attempts} == {"g15"}
    assert all(c["requests"]["total"] == 0 for n, c in (await counters(http)).items() if n != "g15")


async def test_same_model_uses_only_deployments_of_that_model(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    await outage(http, "g15")
    result = await gate.generate("a fox", model="best", fallback="same-model", quality="low")
    assert result.served_by == (("gpt-image-1.5", "g15-swc"),) and result.fallback_from == "gpt-image-1.5"
    await outage(http, "g15-swc")
    with pytest.raises(NoDeploymentAvailable) as info:
        await gate.generate("a fox", model="best", fallback="same-model", quality="low")
    assert "gpt-image-1.5 via best-eu" in info.value.message
    stats = await counters(http)
    assert (
        stats["g1"]["requests"]["total"]
        == stats["mini"]["requests"]["total"]
        == stats["d3"]["requests"]["total"]
        == 0
    )
    await assert_billed_images_accounted(http, result)


async def test_bad_fallback_mode_is_a_clear_error(make_gate: GateFactory) -> None:
    gate = make_gate(emulator())
    with pytest.raises(InvalidRequest, match="fallback='maybe'"):
        await gate.generate("a fox", model="best", fallback="maybe")
    with pytest.raises(InvalidRequest, match="deadline_s=-1"):
        await gate.generate("a fox", model="best", deadline_s=-1)


async def test_content_filter_is_not_fallen_back(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    with pytest.raises(ContentFiltered):
        await gate.generate("a massacre in the town square", model="best")
    stats = await counters(http)
    assert stats["g15"]["requests"]["total"] == 1
    assert sum(c["requests"]["total"] for n, c in stats.items() if n != "g15") == 0


async def test_rpm_exhausted_moves_to_the_next_deployment_group(make_gate: GateFactory) -> None:
    # 6 rpm over 10 s windows = 1 request per window; the emulator runs on the real clock, so the
    # gateway's (fake) retry-after waits do not refill it and g15 stays exhausted.
    http = emulator(g15={"rpm": 6})
    gate = make_gate(http)
    first = await gate.generate("fox one", model="best", quality="low")
    second = await gate.generate("fox two", model="best", quality="low")
    assert first.deployment == "g15" and second.deployment == "g15-swc"
    assert [a.status_code for a in second.attempts if a.deployment == "g15"] == [429, 429]
    assert second.fallback_from == "gpt-image-1.5"
    await assert_billed_images_accounted(http, first, second)


async def test_deadline_without_degrade_fails_fast_and_sends_nothing(make_gate: GateFactory) -> None:
    fake = FakeTime()
    http = emulator(fake)
    gate = make_gate(http, fake)
    with pytest.raises(DeadlineExceeded) as info:
        await gate.generate("a fox", model="best", quality="high", deadline_s=10)
    err = info.value
    assert err.http_status == 504 and err.remaining_s == pytest.approx(10)
    assert "degrade=True" in err.message and "dall-e-3 via dalle" in err.message
    assert all(c["requests"]["total"] == 0 for c in (await counters(http)).values())


async def test_degrade_picks_a_lower_quality_only_when_allowed(make_gate: GateFactory) -> None:
    fake = FakeTime()
    http = emulator(fake)
    gate = make_gate(http, fake)
    result = await gate.generate("a fox", model="best", quality="high", deadline_s=10, degrade=True)
    assert result.degraded and result.deployment == "g15" and result.fallback_from is None
    (change,) = result.changes
    assert (change.field, change.old, change.new) == ("quality", "high", "medium")
    assert change.reason.startswith("degraded: deadline")
    assert result.usage is not None and result.usage.output_tokens == 1056  # the emulator made a medium image
    await assert_billed_images_accounted(http, result)


async def test_observed_latency_replaces_the_catalog_estimate(make_gate: GateFactory) -> None:
    fake = FakeTime()
    # g15 answers in 2 s (fake time), far quicker than the catalog's ~24 s for high quality
    http = emulator(fake, g15={"latency": LatencySpec(median_s=2.0, distribution="fixed")})
    gate = make_gate(http, fake)
    warm = await gate.generate("a fox", model="best", quality="high", deadline_s=60)
    assert warm.deployment == "g15" and warm.latency_s == pytest.approx(2.0, abs=0.01)
    quick = await gate.generate("a fox", model="best", quality="high", deadline_s=10)
    assert quick.deployment == "g15" and not quick.degraded and quick.changes == ()
    await assert_billed_images_accounted(http, warm, quick)


async def test_latency_learnt_without_a_quality_counts_for_the_default_quality(
    make_gate: GateFactory,
) -> None:
    fake = FakeTime()
    # no quality asked for: the model's default (high, ~24 s in the catalog) is what gets made
    http = emulator(fake, g15={"latency": LatencySpec(median_s=2.0, distribution="fixed")})
    gate = make_gate(http, fake)
    warm = await gate.generate("a fox", model="best", deadline_s=60)
    assert warm.deployment == "g15"
    views = {v.name: v for v in await gate.scheduler.snapshot()}
    assert views["g15"].latency_s["high"] == pytest.approx(2.0, abs=0.01)
    quick = await gate.generate("a fox", model="best", deadline_s=10)
    assert quick.deployment == "g15" and not quick.degraded and quick.changes == ()
    await assert_billed_images_accounted(http, warm, quick)


async def test_every_model_failing_is_one_error_naming_each(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    await outage(http, "g15", "g15-swc", "g1", "mini")
    put = await http.put("/_emulator/deployments/d3/faults", json=[{"kind": "status", "status": 500}])
    assert put.status_code == 200
    with pytest.raises(NoDeploymentAvailable) as info:
        await gate.generate("three foxes", model="best", n=3)
    message = info.value.message
    for label in (
        "gpt-image-1.5 via best:",
        "gpt-image-1.5 via best-eu:",
        "gpt-image-1 via std:",
        "dall-e-3 via dalle:",
    ):
        assert label in message
    assert {a.deployment for a in info.value.attempts} == set(NAMES)
    await assert_billed_images_accounted(http)


async def test_partial_shortfall_keeps_the_images_made_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "one-attempt.yaml"
    path.write_text(CONFIG.replace("max_attempts: 2", "max_attempts: 1"))
    http = emulator()
    fake = FakeTime()
    async with AsyncImageGate(load(path, {}), http_client=http, clock=fake.clock, sleep=fake.sleep) as gate:
        await outage(http, "g15", "g15-swc", "g1", "mini")
        # one of the three dall-e-3 calls gets a 500 and there is no model left to try
        put = await http.put(
            "/_emulator/deployments/d3/faults", json=[{"kind": "status", "status": 500, "count": 1}]
        )
        assert put.status_code == 200
        result = await gate.generate("three foxes", model="best", n=3)
    assert len(result.images) == 2
    shortfall = result.changes[-1]
    assert (shortfall.field, shortfall.old, shortfall.new) == ("n", 3, 2)
    assert "dall-e-3 via dalle: upstream_failed" in shortfall.reason
    await assert_billed_images_accounted(http, result)
    await http.aclose()


def square_png(size: int = 1024) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (20, 60, 200)).save(buf, "PNG")
    return buf.getvalue()


async def test_edit_falls_back_to_a_model_with_edits_and_skips_dall_e_3(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    await outage(http, "g15", "g15-swc", "g1")
    result = await gate.edit(square_png(), "add a hat", model="best", quality="low", input_fidelity="high")
    assert result.served_by == (("gpt-image-1-mini", "mini"),)
    changed = {c.field: (c.old, c.new) for c in result.changes}
    # gpt-image-1-mini takes no input_fidelity: dropped, and said so
    assert changed == {"model": ("gpt-image-1.5", "gpt-image-1-mini"), "input_fidelity": ("high", None)}
    await outage(http, "mini")
    with pytest.raises(NoDeploymentAvailable) as info:
        await gate.edit(square_png(), "add a hat", model="best", quality="low")
    assert "dall-e-3" not in info.value.message  # no edits on dall-e-3: never tried
    assert (await counters(http))["d3"]["requests"]["total"] == 0
    await assert_billed_images_accounted(http, result)


async def test_stream_falls_back_to_a_model_that_streams(make_gate: GateFactory) -> None:
    http = emulator()
    gate = make_gate(http)
    await outage(http, "g15", "g15-swc")
    items = [
        item async for item in gate.stream("a lighthouse", model="best", partial_images=2, quality="low")
    ]
    partials = [i for i in items if isinstance(i, PartialImage)]
    (final,) = [i for i in items if isinstance(i, ImageResult)]
    assert len(partials) == 2 and final.served_by == (("gpt-image-1", "g1"),)
    assert final.fallback_from == "gpt-image-1.5"
    await assert_billed_images_accounted(http, final)

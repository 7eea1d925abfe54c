"""Table tests for the pure fallback policy: chains, translation per step, n splitting, when to
move on, and deadline fitting with and without degradation."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.catalog import default_catalog
from imagegate.config import ImageGateConfig
from imagegate.config_load import load
from imagegate.errors import (
    BudgetExceeded,
    ContentFiltered,
    DeadlineExceeded,
    ImageGateError,
    InvalidRequest,
    NoDeploymentAvailable,
    RateLimited,
    UpstreamNotSent,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)
from imagegate.policy.fallback import (
    Fit,
    RequestOptions,
    TooSlow,
    build_chain,
    fit_deadline,
    moves_on,
    options_from_headers,
    parse_mode,
    split_n,
    targets,
)
from imagegate.policy.validation import validate
from imagegate.types import Change, EditRequest, ImageRequest, InputImage

CAT = default_catalog()

CONFIG = """
deployments:
  - {name: g15, endpoint: https://e.openai.azure.com, model: gpt-image-1.5, api_key: k, region: eastus2}
  - {name: g15-swc, endpoint: https://s.openai.azure.com, model: gpt-image-1.5, api_key: k,
     region: swedencentral}
  - {name: g1, endpoint: https://e.openai.azure.com, model: gpt-image-1, api_key: k, region: eastus2}
  - {name: mini, endpoint: https://e.openai.azure.com, model: gpt-image-1-mini, api_key: k}
  - {name: d3, endpoint: https://e.openai.azure.com, model: dall-e-3, api_key: k, region: eastus}
models:
  best: [g15]
  best-eu: [g15-swc]
  std: [g1]
  dalle: [d3]
routing:
  best: {fallbacks: [best-eu, std]}
  std: {fallbacks: [gpt-image-1-mini, dalle]}
"""


def _load(text: str) -> ImageGateConfig:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "imagegate.yaml"
        path.write_text(text)
        return load(path, {})


_CFG = _load(CONFIG)


@pytest.fixture(scope="module")
def cfg() -> ImageGateConfig:
    return _CFG


def chain_for(cfg: ImageGateConfig, req: ImageRequest, mode: str = "any", stream: bool = False):  # type: ignore[no-untyped-def]
    primary = validate(req, CAT.get("gpt-image-1.5"), CAT)
    return build_chain(cfg, CAT, original=req, primary=primary, mode=parse_mode(mode), stream=stream)


def test_targets_follow_fallbacks_depth_first_each_deployment_once(cfg: ImageGateConfig) -> None:
    got = [(t.name, t.model, [d.name for d in t.deployments]) for t in targets(cfg, "best")]
    assert got == [
        ("best", "gpt-image-1.5", ["g15"]),
        ("best-eu", "gpt-image-1.5", ["g15-swc"]),
        ("std", "gpt-image-1", ["g1"]),
        ("gpt-image-1-mini", "gpt-image-1-mini", ["mini"]),
        ("dalle", "dall-e-3", ["d3"]),
    ]
    # a catalog model name reaches every deployment serving it, once
    assert [[d.name for d in t.deployments] for t in targets(cfg, "gpt-image-1.5")] == [["g15", "g15-swc"]]


def test_chain_translates_each_step_and_splits_n_for_dall_e_3(cfg: ImageGateConfig) -> None:
    req = ImageRequest(
        prompt="a fox", model="best", n=3, size="1536x1024", quality="high", output_format="jpeg",
        background="opaque",
    )  # fmt: skip
    chain = chain_for(cfg, req)
    assert [s.target.name for s in chain.steps] == ["best", "best-eu", "std", "gpt-image-1-mini", "dalle"]
    assert chain.steps[0].primary and chain.steps[0].changes == ()
    mini = chain.steps[3]
    assert mini.request.n == 3 and mini.request.quality == "high" and mini.request.size == "1536x1024"
    assert mini.changes == (Change("model", "gpt-image-1.5", "gpt-image-1-mini", "fallback to mini"),)
    d3 = chain.steps[4]
    assert (d3.request.n, d3.request.size, d3.request.quality) == (1, "1792x1024", "hd")
    assert d3.request.output_format is None and d3.request.background is None
    assert d3.request.response_format == "b64_json"
    fields = [(c.field, c.old, c.new) for c in d3.changes]
    assert fields == [
        ("model", "gpt-image-1.5", "dall-e-3 via dalle"),
        ("response_format", None, "b64_json"),
        ("n", 3, 1),
        ("size", "1536x1024", "1792x1024"),
        ("quality", "high", "hd"),
        ("output_format", "jpeg", None),
        ("background", "opaque", None),
    ]
    assert "3 calls" in d3.changes[2].reason


def test_same_model_keeps_the_model_and_none_keeps_the_primary(cfg: ImageGateConfig) -> None:
    req = ImageRequest(prompt="a fox", model="best")
    same = chain_for(cfg, req, "same-model")
    assert [(s.target.name, s.spec.name) for s in same.steps] == [
        ("best", "gpt-image-1.5"),
        ("best-eu", "gpt-image-1.5"),
    ]
    assert [s.target.name for s in chain_for(cfg, req, "none").steps] == ["best"]


def test_steps_that_cannot_take_the_request_are_skipped_with_a_reason(cfg: ImageGateConfig) -> None:
    edit = EditRequest(prompt="add a hat", model="best", images=(InputImage(data=b"x"),))
    primary = validate(ImageRequest(prompt="add a hat"), CAT.get("gpt-image-1.5"), CAT)
    chain = build_chain(cfg, CAT, original=edit, primary=primary)
    assert "dalle" not in [s.target.name for s in chain.steps]
    (skipped,) = [s for s in chain.skipped if s.target.name == "dalle"]
    assert "dall-e-3" in skipped.reason and "edits" in skipped.reason

    long_prompt = ImageRequest(prompt="x" * 5000, model="best")
    chain = chain_for(cfg, long_prompt)
    assert [s.target.name for s in chain.skipped] == ["dalle"]
    assert "at most 4000" in chain.skipped[0].reason  # never truncated

    streamed = chain_for(cfg, ImageRequest(prompt="a fox", model="best", partial_images=2), stream=True)
    assert [s.target.name for s in streamed.skipped] == ["dalle"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoDeploymentAvailable("none"), True),
        (RateLimited("429", retry_after_s=5), True),
        (UpstreamNotSent("refused"), True),
        (UpstreamRejected("401", status_code=401), True),
        (UpstreamStatusError("500", status_code=500), True),
        (UpstreamStatusError("503", status_code=503), True),
        (DeadlineExceeded("slow", remaining_s=1.0), True),
        (ContentFiltered("no", categories=["violence"]), False),
        (InvalidRequest("bad"), False),
        (BudgetExceeded("over", budget="k", limit_usd="1", remaining_usd="0"), False),
        (UpstreamTimeout("read timeout after sending"), False),
        (UpstreamStatusError("malformed 200 body", status_code=200), False),
    ],
)
def test_moves_on(error: ImageGateError, expected: bool) -> None:
    assert moves_on(error) is expected


@pytest.mark.parametrize(
    ("n", "n_max", "expected"),
    [(1, 1, (1,)), (3, 1, (1, 1, 1)), (5, 2, (2, 2, 1)), (4, 10, (4,)), (0, 1, ())],
)
def test_split_n(n: int, n_max: int, expected: tuple[int, ...]) -> None:
    assert split_n(n, n_max) == expected


@given(st.integers(1, 50), st.integers(1, 10))
def test_split_n_makes_exactly_n_in_few_calls(n: int, n_max: int) -> None:
    calls = split_n(n, n_max)
    assert sum(calls) == n and all(1 <= c <= n_max for c in calls) and len(calls) == math.ceil(n / n_max)


def test_parse_mode() -> None:
    assert parse_mode(None) == "any" and parse_mode("Same-Model") == "same-model"
    with pytest.raises(
        InvalidRequest, match="fallback='sometimes' is not allowed: one of any, same-model, none"
    ):
        parse_mode("sometimes")


GPT = CAT.get("gpt-image-1")
EXPECTED = {"low": 5.0, "medium": 9.0, "high": 24.0, "auto": 24.0}


@pytest.mark.parametrize(
    ("quality", "remaining", "degrade", "expected"),
    [
        ("high", 30.0, False, Fit("high")),
        (None, 30.0, False, Fit(None)),  # the default quality (high) fits
        ("low", 6.0, True, Fit("low")),
        ("high", 10.0, True, "medium"),
        ("high", 6.0, True, "low"),
        ("auto", 10.0, True, "medium"),
        (None, 6.0, True, "low"),
    ],
)
def test_fit_deadline_keeps_or_degrades(
    quality: str | None, remaining: float, degrade: bool, expected: Fit | str
) -> None:
    got = fit_deadline(GPT, CAT, quality=quality, remaining_s=remaining, expected_s=EXPECTED, degrade=degrade)
    if isinstance(expected, Fit):
        assert got == expected
        return
    assert isinstance(got, Fit) and got.quality == expected and got.change is not None
    assert got.change.field == "quality" and got.change.new == expected
    assert got.change.old == (quality or "high")
    assert got.change.reason.startswith("degraded: deadline")


@pytest.mark.parametrize(
    ("quality", "remaining", "degrade", "hint"),
    [
        ("high", 10.0, False, "allow degrade=True"),  # would fit at medium, but not allowed
        ("high", 3.0, True, "needs ~24.0 s, 3.0 s left"),  # nothing fits
        ("low", 0.0, True, "needs ~5.0 s"),  # the deadline has passed
    ],
)
def test_fit_deadline_too_slow(quality: str, remaining: float, degrade: bool, hint: str) -> None:
    got = fit_deadline(GPT, CAT, quality=quality, remaining_s=remaining, expected_s=EXPECTED, degrade=degrade)
    assert isinstance(got, TooSlow) and got.quality == quality and hint in got.reason


def test_fit_deadline_uses_only_what_is_known() -> None:
    d3 = CAT.get("dall-e-3")
    got = fit_deadline(d3, CAT, quality="hd", remaining_s=10.0, expected_s={"standard": 8.0}, degrade=False)
    assert got == Fit("hd")  # no figure for hd: no reason to refuse
    slow = fit_deadline(
        d3, CAT, quality="hd", remaining_s=10.0, expected_s={"hd": 12.0, "standard": 8.0}, degrade=True
    )
    assert isinstance(slow, Fit) and slow.quality == "standard"


@given(
    n=st.integers(1, 10),
    size=st.sampled_from(["1024x1024", "1536x1024", "1024x1536", "auto", None]),
    quality=st.sampled_from(["low", "medium", "high", "auto", None]),
    output_format=st.sampled_from(["png", "jpeg", None]),
    background=st.sampled_from(["transparent", "opaque", "auto", None]),
)
def test_every_step_request_is_valid_for_its_model(
    n: int, size: str | None, quality: str | None, output_format: str | None, background: str | None
) -> None:
    if background == "transparent" and output_format == "jpeg":
        return  # invalid for the primary itself
    req = ImageRequest(
        prompt="a fox", model="best", n=n, size=size, quality=quality, output_format=output_format,
        background=background,
    )  # fmt: skip
    chain = chain_for(_CFG, req)
    assert [s.target.name for s in chain.steps][:1] == ["best"] and not chain.skipped
    for step in chain.steps:
        validate(step.request, step.spec, CAT)  # raises if translation left anything invalid
        assert step.request.n <= step.spec.n_max
        assert sum(split_n(n, step.spec.n_max)) == n
        if not step.primary:
            assert step.changes[0].field == "model"


def test_options_from_headers() -> None:
    assert options_from_headers({}) == RequestOptions()
    got = options_from_headers(
        {
            "x-imagegate-fallback": "same-model",
            "x-imagegate-deadline-s": "12.5",
            "x-imagegate-degrade": "true",
        }
    )
    assert got == RequestOptions(fallback="same-model", deadline_s=12.5, degrade=True)
    with pytest.raises(
        InvalidRequest, match="x-imagegate-deadline-s='soon' is not allowed: a number of seconds"
    ):
        options_from_headers({"x-imagegate-deadline-s": "soon"})
    with pytest.raises(InvalidRequest, match="x-imagegate-deadline-s='-3'"):
        options_from_headers({"x-imagegate-deadline-s": "-3"})
    with pytest.raises(InvalidRequest, match="x-imagegate-degrade='perhaps' is not allowed: true or false"):
        options_from_headers({"x-imagegate-degrade": "perhaps"})
    with pytest.raises(InvalidRequest, match="fallback='all'"):
        options_from_headers({"x-imagegate-fallback": "all"})

from __future__ import annotations

import ast
import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

from imagegate.catalog import default_catalog, load_catalog
from imagegate.errors import ConfigError, NotFound

SRC = Path(__file__).resolve().parents[2] / "src" / "imagegate"


def test_catalog_has_every_model_with_prices_and_sources() -> None:
    cat = default_catalog()
    assert set(cat.names()) == {
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
        "dall-e-3",
        "dall-e-2",
    }
    for spec in cat.models.values():
        assert spec.pricing.source
        assert spec.pricing.checked > dt.date(2023, 1, 1)
        assert spec.default_quality in spec.qualities


def test_azure_default_quality() -> None:
    cat = default_catalog()
    assert cat.get("gpt-image-1").default_quality == "high"
    assert cat.get("gpt-image-1.5").default_quality == "high"
    assert cat.get("gpt-image-1-mini").default_quality == "medium"


def test_token_prices_and_table() -> None:
    pricing = default_catalog().get("gpt-image-1").pricing
    assert pricing.kind == "tokens"
    assert pricing.image_output_per_1m == Decimal("40.00")
    assert pricing.output_token_table is not None
    assert pricing.output_token_table.tokens["1024x1024"]["high"] == 4160


def test_per_image_prices_for_dalle() -> None:
    pricing = default_catalog().get("dall-e-3").pricing
    assert pricing.kind == "per_image"
    assert pricing.per_image["1792x1024"]["hd"] == Decimal("0.120")


@pytest.mark.parametrize(
    ("size", "ok"),
    [
        ("1024x1024", True),
        ("3840x2160", True),
        ("2160x3840", True),
        ("auto", True),
        ("1000x1000", False),  # not a multiple of 16
        ("3856x2160", False),  # too long
        ("3072x1008", False),  # aspect > 3
        ("4096x4096", False),
        ("big", False),
    ],
)
def test_size_rule(size: str, ok: bool) -> None:
    assert default_catalog().get("gpt-image-2").accepts_size(size) is ok


def test_fixed_sizes_reject_others() -> None:
    spec = default_catalog().get("gpt-image-1")
    assert spec.accepts_size("1536x1024")
    assert not spec.accepts_size("1792x1024")


def test_retirement_uses_injected_date() -> None:
    spec = default_catalog().get("dall-e-3")
    assert spec.retirement_status(dt.date(2026, 1, 1)) is None
    warning = spec.retirement_status(dt.date(2026, 11, 24))
    assert warning is not None and "retire" in warning
    mini = default_catalog().get("gpt-image-1-mini")
    assert mini.retirement_status(dt.date(2026, 11, 24)) is not None  # deprecated since 2026-10-06
    assert mini.retirement_status(dt.date(2026, 9, 1)) is None


def test_read_timeouts_grow_with_quality() -> None:
    spec = default_catalog().get("gpt-image-1")
    assert spec.read_timeout_for("high") > spec.read_timeout_for("low")
    assert spec.read_timeout_for(None) == max(spec.read_timeout_s.values())


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(NotFound, match="gpt-image-1"):
        default_catalog().get("no-such-model")


def test_broken_catalog_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text(
        '[models.a]\nprompt_max_chars=1\nn_max=1\nsizes=["1x1"]\nqualities=["q"]\ndefault_quality="z"\n'
        '[models.a.pricing]\nkind="tokens"\noutput_token_table="nope"\nsource="s"\nchecked="2026-01-01"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_catalog(bad)
    text = str(info.value)
    assert "default_quality" in text and "output_token_table" in text


def test_a_token_table_says_what_partial_and_input_images_are_billed(tmp_path: Path) -> None:
    """Budget holds count them (``policy.pricing.reservation_estimate``): a table without them, or
    with a bad value, is refused naming each, rather than holding too little."""
    bad = tmp_path / "models.toml"
    bad.write_text(
        '[token_tables.t]\nsource="s"\npartial_image_tokens=-1\n"1x1" = { q = 1 }\n'
        '[models.a]\nprompt_max_chars=1\nn_max=1\nsizes=["1x1"]\nqualities=["q"]\ndefault_quality="q"\n'
        '[models.a.pricing]\nkind="tokens"\noutput_token_table="t"\nsource="s"\nchecked="2026-01-01"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_catalog(bad)
    text = str(info.value)
    assert "token_tables.t.partial_image_tokens: -1" in text
    assert "token_tables.t.input_image_tokens_max: None" in text


def test_adding_a_model_is_a_data_change(tmp_path: Path) -> None:
    extra = (SRC / "catalog" / "models.toml").read_text() + (
        '\n[models."future-image-9"]\ndescription="x"\nprompt_max_chars=10\nn_max=2\nsizes=["512x512"]\n'
        'qualities=["low"]\ndefault_quality="low"\n[models."future-image-9".pricing]\nkind="per_image"\n'
        'source="test"\nchecked="2026-11-01"\nper_image={ "512x512" = { low = "0.01" } }\n'
    )
    path = tmp_path / "models.toml"
    path.write_text(extra)
    cat = load_catalog(path)
    assert cat.get("future-image-9").accepts_size("512x512")


MODEL_NAME = re.compile(r"gpt-image|dall-e|dalle", re.IGNORECASE)


def code_strings(path: Path) -> list[tuple[int, str]]:
    """String literals that code can act on (docstrings and comments excluded)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_model_names_in_code_paths() -> None:
    """Model names are catalog data; code outside catalog/ and emulator/ never spells them."""
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in {"catalog", "emulator"}:
            continue
        offenders += [f"{rel}:{n}: {text!r}" for n, text in code_strings(path) if MODEL_NAME.search(text)]
    assert not offenders, "\n".join(offenders)


def test_zero_config_deployments_match_the_emulator_defaults() -> None:
    from imagegate.catalog import emulated_deployments_data
    from imagegate.emulator import DEMO_API_KEY, default_emulator_config

    data = emulated_deployments_data()
    emulator = {(d.name, d.model, d.region) for d in default_emulator_config().deployments}
    ours = {(d["name"], d["model"], d["region"]) for d in data["deployments"]}
    assert ours <= emulator
    assert data["api_key"] == DEMO_API_KEY

"""Typed loader for ``models.toml``: the catalog of image models, their limits and prices.

The catalog is data so that adding a model never touches code. This module turns the TOML into
frozen dataclasses once, checks it (a broken catalog fails loudly at import of the first caller,
not mid-request), and answers capability questions. It reads nothing but the packaged file (or a
path a test hands it).
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from imagegate.errors import ConfigError, NotFound

__all__ = [
    "Catalog",
    "ModelSpec",
    "Pricing",
    "SizeRule",
    "TokenTable",
    "default_catalog",
    "emulated_deployments_data",
    "load_catalog",
    "parse_size",
]

PriceKind = Literal["tokens", "per_image"]


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1024x1536"`` → ``(1024, 1536)``; anything else (``"auto"``, junk) → ``None``.

    ASCII digits only: ``str.isdigit`` is also true for ``"²"`` (which ``int`` refuses) and for
    full-width digits (which ``int`` reads, but no upstream would)."""
    w, sep, h = size.partition("x")
    if not sep or not (w.isascii() and w.isdigit()) or not (h.isascii() and h.isdigit()):
        return None
    return int(w), int(h)


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeRule:
    """A size rule instead of a fixed list (any ``WxH`` that satisfies every bound)."""

    multiple_of: int
    min_edge: int
    max_long_edge: int
    max_short_edge: int
    max_aspect: float

    def check(self, width: int, height: int) -> str | None:
        """Return why ``width``×``height`` breaks the rule, or ``None`` when it is fine."""
        long_edge, short_edge = max(width, height), min(width, height)
        if width % self.multiple_of or height % self.multiple_of:
            return f"width and height must be multiples of {self.multiple_of}"
        if short_edge < self.min_edge:
            return f"each edge must be at least {self.min_edge}"
        if long_edge > self.max_long_edge or short_edge > self.max_short_edge:
            return f"at most {self.max_long_edge}x{self.max_short_edge} (either orientation)"
        if long_edge / short_edge > self.max_aspect:
            return f"aspect ratio must be between 1:{self.max_aspect:g} and {self.max_aspect:g}:1"
        return None

    def describe(self) -> str:
        return (
            f"WIDTHxHEIGHT with both multiples of {self.multiple_of}, aspect between "
            f"1:{self.max_aspect:g} and {self.max_aspect:g}:1, at most "
            f"{self.max_long_edge}x{self.max_short_edge}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenTable:
    """Output tokens per image by size then quality, and the family's other billed tokens that a
    budget hold must cover: each partial image of a stream, and the most an edit's input image
    can be billed."""

    name: str
    source: str
    tokens: Mapping[str, Mapping[str, int]]
    partial_image_tokens: int = 0
    input_image_tokens_max: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pricing:
    """Prices in USD. Token prices are per 1M tokens; per-image prices by size then quality."""

    kind: PriceKind
    source: str
    checked: dt.date
    text_input_per_1m: Decimal = Decimal(0)
    image_input_per_1m: Decimal = Decimal(0)
    image_output_per_1m: Decimal = Decimal(0)
    output_token_table: TokenTable | None = None
    per_image: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    published_per_image: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    published_per_image_source: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """What one model accepts, what it costs and when it retires."""

    name: str
    description: str
    prompt_max_chars: int
    n_min: int = 1
    n_max: int
    sizes: tuple[str, ...]
    size_rule: SizeRule | None = None
    default_size: str | None = None
    qualities: tuple[str, ...]
    default_quality: str
    output_formats: tuple[str, ...] = ()
    transparent_formats: tuple[str, ...] = ()
    output_compression: bool = False
    backgrounds: tuple[str, ...] = ()
    moderations: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    response_formats: tuple[str, ...] = ()
    edits: bool = False
    edit_max_images: int = 0
    edit_image_max_bytes: int = 0
    edit_image_formats: tuple[str, ...] = ()
    edit_square_only: bool = False
    mask_max_bytes: int = 0
    input_fidelities: tuple[str, ...] = ()
    streaming: bool = False
    partial_images_max: int = 0
    deprecation: dt.date | None = None
    retirement: dt.date | None = None
    retirement_note: str | None = None
    replacement: str | None = None
    read_timeout_s: Mapping[str, float] = field(default_factory=dict)
    typical_latency_s: Mapping[str, float] = field(default_factory=dict)
    route_output_formats: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    azure_api_version: str | None = None
    pricing: Pricing

    def output_formats_for(self, dialect: str | None) -> tuple[str, ...]:
        """Output formats on a given wire dialect (``azure-deployments``, ``azure-v1``, ``openai``)."""
        if dialect is not None and dialect in self.route_output_formats:
            return self.route_output_formats[dialect]
        return self.output_formats

    def accepts_size(self, size: str) -> bool:
        if size in self.sizes:
            return True
        parsed = parse_size(size)
        return bool(self.size_rule and parsed and self.size_rule.check(*parsed) is None)

    def allowed_sizes_text(self) -> str:
        fixed = ", ".join(self.sizes)
        if self.size_rule is None:
            return f"one of {fixed}"
        return f"{fixed}, or {self.size_rule.describe()}"

    @property
    def fixed_sizes(self) -> tuple[tuple[int, int], ...]:
        """The concrete ``WxH`` sizes of the fixed list (without ``auto``)."""
        return tuple(p for p in (parse_size(s) for s in self.sizes) if p is not None)

    def read_timeout_for(self, quality: str | None) -> float:
        """Read timeout for one attempt: long enough for the slowest quality when unknown."""
        if quality is not None and quality in self.read_timeout_s:
            return self.read_timeout_s[quality]
        return max(self.read_timeout_s.values(), default=600.0)

    def typical_latency_for(self, quality: str | None) -> float | None:
        """Expected seconds per request at ``quality`` (the default quality when ``None``) before
        anything was observed; ``None`` when the catalog has no figure."""
        wanted = quality or self.default_quality
        if wanted in self.typical_latency_s:
            return self.typical_latency_s[wanted]
        return max(self.typical_latency_s.values(), default=None)

    def retirement_status(self, today: dt.date) -> str | None:
        """A warning when ``today`` is past retirement (or deprecation), else ``None``."""
        instead = f"; move to {self.replacement}" if self.replacement else ""
        if self.retirement and today >= self.retirement:
            note = self.retirement_note or f"retirement {self.retirement}"
            return f"model {self.name} is past its retirement date ({note}){instead}"
        if self.deprecation and today >= self.deprecation:
            note = self.retirement_note or f"deprecated {self.deprecation}"
            return f"model {self.name} is deprecated ({note}){instead}"
        return None


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every known model by name, plus the quality ranks used for translation."""

    models: Mapping[str, ModelSpec]
    quality_ranks: Mapping[str, int]

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise NotFound(f"unknown model {name!r}; the catalog knows {known}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self.models)

    def models_accepting(self, field_name: str, value: object) -> tuple[str, ...]:
        """Names of models whose ``field_name`` list contains ``value`` (for helpful errors)."""
        hits: list[str] = []
        for spec in self.models.values():
            allowed = getattr(spec, field_name, ())
            if isinstance(allowed, tuple) and value in allowed:
                hits.append(spec.name)
        return tuple(hits)


# ---------------------------------------------------------------------------------------------
# loading


def _date(raw: Any, where: str, problems: list[str]) -> dt.date | None:
    if raw is None:
        return None
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(str(raw))
    except ValueError:
        problems.append(f"{where}: {raw!r} is not an ISO date")
        return None


def _decimal_table(raw: Mapping[str, Mapping[str, str]]) -> Mapping[str, Mapping[str, Decimal]]:
    return MappingProxyType(
        {size: MappingProxyType({q: Decimal(str(v)) for q, v in row.items()}) for size, row in raw.items()}
    )


def _pricing(
    name: str, raw: Mapping[str, Any], tables: Mapping[str, TokenTable], problems: list[str]
) -> Pricing:
    kind: PriceKind = "per_image"
    if raw.get("kind") == "tokens":
        kind = "tokens"
    elif raw.get("kind") != "per_image":
        problems.append(f"models.{name}.pricing.kind: {raw.get('kind')!r} is not tokens or per_image")
    table = None
    if kind == "tokens":
        table_name = raw.get("output_token_table")
        table = tables.get(str(table_name))
        if table is None:
            problems.append(f"models.{name}.pricing.output_token_table: unknown table {table_name!r}")
    elif not raw.get("per_image"):
        problems.append(f"models.{name}.pricing.per_image: missing for per-image pricing")
    checked = _date(raw.get("checked"), f"models.{name}.pricing.checked", problems)
    return Pricing(
        kind=kind,
        source=str(raw.get("source", "")),
        checked=checked or dt.date.min,
        text_input_per_1m=Decimal(str(raw.get("text_input_per_1m", "0"))),
        image_input_per_1m=Decimal(str(raw.get("image_input_per_1m", "0"))),
        image_output_per_1m=Decimal(str(raw.get("image_output_per_1m", "0"))),
        output_token_table=table,
        per_image=_decimal_table(raw.get("per_image", {})),
        published_per_image=_decimal_table(raw.get("published_per_image", {})),
        published_per_image_source=raw.get("published_per_image_source"),
    )


_TUPLE_FIELDS = (
    "sizes",
    "qualities",
    "output_formats",
    "transparent_formats",
    "backgrounds",
    "moderations",
    "styles",
    "response_formats",
    "edit_image_formats",
    "input_fidelities",
)
_SCALAR_FIELDS = (
    "description",
    "prompt_max_chars",
    "n_min",
    "n_max",
    "default_size",
    "default_quality",
    "output_compression",
    "edits",
    "edit_max_images",
    "edit_image_max_bytes",
    "edit_square_only",
    "mask_max_bytes",
    "streaming",
    "partial_images_max",
    "retirement_note",
    "replacement",
    "azure_api_version",
)


def _model(
    name: str, raw: Mapping[str, Any], tables: Mapping[str, TokenTable], problems: list[str]
) -> ModelSpec:
    kwargs: dict[str, Any] = {k: tuple(raw[k]) for k in _TUPLE_FIELDS if k in raw}
    kwargs.update({k: raw[k] for k in _SCALAR_FIELDS if k in raw})
    for required in ("prompt_max_chars", "n_max", "sizes", "qualities", "default_quality", "pricing"):
        if required not in raw:
            problems.append(f"models.{name}.{required}: missing")
    if raw.get("default_quality") not in raw.get("qualities", ()):
        problems.append(f"models.{name}.default_quality: not one of its qualities")
    rule = raw.get("size_rule")
    try:
        return ModelSpec(
            name=name,
            size_rule=SizeRule(**rule) if rule else None,
            deprecation=_date(raw.get("deprecation"), f"models.{name}.deprecation", problems),
            retirement=_date(raw.get("retirement"), f"models.{name}.retirement", problems),
            read_timeout_s=MappingProxyType({k: float(v) for k, v in raw.get("read_timeout_s", {}).items()}),
            typical_latency_s=MappingProxyType(
                {k: float(v) for k, v in raw.get("typical_latency_s", {}).items()}
            ),
            route_output_formats=MappingProxyType(
                {k: tuple(v) for k, v in raw.get("route_output_formats", {}).items()}
            ),
            pricing=_pricing(name, raw.get("pricing", {}), tables, problems),
            **kwargs,
        )
    except TypeError as exc:
        problems.append(f"models.{name}: {exc}")
        raise ConfigError(problems, source="models.toml") from exc


def _token_tables(raw: Mapping[str, Any], problems: list[str]) -> dict[str, TokenTable]:
    tables: dict[str, TokenTable] = {}
    for name, body in raw.items():
        rows = {k: MappingProxyType(dict(v)) for k, v in body.items() if isinstance(v, dict)}
        counts: dict[str, int] = {}
        for key in ("partial_image_tokens", "input_image_tokens_max"):
            value = body.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"token_tables.{name}.{key}: {value!r} is not a whole number >= 0")
            else:
                counts[key] = value
        tables[name] = TokenTable(
            name=name, source=str(body.get("source", "")), tokens=MappingProxyType(rows), **counts
        )
    return tables


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and check a catalog file (the packaged ``models.toml`` by default)."""
    if path is None:
        text = resources.files("imagegate.catalog").joinpath("models.toml").read_text(encoding="utf-8")
        source = "models.toml"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=source) from exc
    problems: list[str] = []
    tables = _token_tables(raw.get("token_tables", {}), problems)
    models = {name: _model(name, body, tables, problems) for name, body in raw.get("models", {}).items()}
    if not models:
        problems.append("no [models.*] tables")
    if problems:
        raise ConfigError(problems, source=source)
    ranks = {str(k): int(v) for k, v in raw.get("quality_ranks", {}).items()}
    return Catalog(models=MappingProxyType(models), quality_ranks=MappingProxyType(ranks))


def emulated_deployments_data() -> dict[str, Any]:
    """The raw table of the built-in emulator's deployments (``emulated.toml``) for zero-config mode."""
    text = resources.files("imagegate.catalog").joinpath("emulated.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.cache
def default_catalog() -> Catalog:
    """The packaged catalog, loaded once (it is immutable data)."""
    return load_catalog()

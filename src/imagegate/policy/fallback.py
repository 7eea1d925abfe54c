"""Cross-model fallback chains and deadline degradation: which models, with which parameters, in
what order, and when to move on. Pure: configuration, catalog and request in, decisions out.

Why this exists: peers make the caller spell out parameters per fallback (LiteLLM) or silently
drop what the next model does not take (Portkey). Here a request meant for gpt-image-1.5 that
falls through to dall-e-3 is *translated* (``policy.translate``: nearest size aspect, nearest
quality rank, unsupported options dropped), ``n`` is split into several calls when the model
makes fewer images per call, and every change is a ``Change`` on the result.

The chain (``build_chain``):

1. The primary step: the deployments of the requested model (a logical group, a deployment or
   a catalog model) that serve the model it was validated for, with the request as validated.
2. Then ``routing.<group>.fallbacks`` of the requested group, depth first (a fallback's own
   fallbacks follow it), each entry a group, deployment or catalog model, each deployment once.
   A target whose deployments serve several models becomes one step per model, in order.
3. Each fallback step's request is the caller's *original* request, ``n`` split to the model's
   ``n_max``, translated and validated for the model. A step that cannot take the request at all
   (an edit on a model without edits, a prompt too long) is skipped with its reason: a prompt is
   never truncated.

``mode`` narrows it per request: ``"any"`` (the whole chain), ``"same-model"`` (only steps of
the primary's model: other regions or groups, never another model), ``"none"`` (the primary
step only; fail-over between its deployments is the attempt loop's and still happens).

Moving on (``moves_on``): only when this model cannot serve now and another might:
``NoDeploymentAvailable``, ``RateLimited`` (capacity exhausted; not a budget), ``UpstreamNotSent``,
``UpstreamRejected`` (our configuration of that deployment), a 5xx ``UpstreamStatusError`` (not
billed), and ``DeadlineExceeded`` from the pre-send deadline check. Never on ``ContentFiltered``
(the same prompt is rejected again, and a different model must not be used to get around a
filter), ``InvalidRequest`` and other caller errors, a read timeout after sending or a malformed
2xx body (both may have been billed: sending elsewhere could bill twice).

Deadlines (``fit_deadline``): given the time left and the expected latency per quality of a
step (observed, else the catalog's ``typical_latency_s``), keep the quality when it fits; with
``degrade`` take the best lower quality that fits (``Change(..., reason="degraded: deadline ...")``);
otherwise the step is too slow, and the chain moves on (a faster model may fit).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal, cast

from imagegate.catalog import Catalog, ModelSpec
from imagegate.config import DeploymentConfig, ImageGateConfig
from imagegate.errors import (
    DeadlineExceeded,
    ImageGateError,
    InvalidRequest,
    NoDeploymentAvailable,
    RateLimited,
    UpstreamNotSent,
    UpstreamRejected,
    UpstreamStatusError,
)
from imagegate.policy.validation import Validated, validate
from imagegate.types import Change, ImageRequest

__all__ = [
    "DEADLINE_HEADER",
    "DEGRADE_HEADER",
    "FALLBACK_HEADER",
    "FALLBACK_MODES",
    "Chain",
    "FallbackMode",
    "Fit",
    "RequestOptions",
    "Skipped",
    "Step",
    "Target",
    "TooSlow",
    "build_chain",
    "chain_steps",
    "chain_targets",
    "dialect_of",
    "fallback_order",
    "fit_deadline",
    "may_serve",
    "moves_on",
    "options_from_headers",
    "parse_mode",
    "split_n",
    "targets",
]

FallbackMode = Literal["any", "same-model", "none"]
FALLBACK_MODES: Final = ("any", "same-model", "none")
# The HTTP request headers proposed for the gateway (``options_from_headers`` parses them).
FALLBACK_HEADER: Final = "x-imagegate-fallback"  # any | same-model | none
DEADLINE_HEADER: Final = "x-imagegate-deadline-s"  # seconds, > 0
DEGRADE_HEADER: Final = "x-imagegate-degrade"  # true | false
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
DEGRADED_REASON: Final = "degraded: deadline"


def parse_mode(value: object) -> FallbackMode:
    """``value`` as a fallback mode, or ``InvalidRequest`` naming what is allowed."""
    if value is None:
        return "any"
    if isinstance(value, str) and value.strip().lower() in FALLBACK_MODES:
        return cast(FallbackMode, value.strip().lower())
    raise InvalidRequest.for_field("fallback", value, "one of " + ", ".join(FALLBACK_MODES))


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Per-request fallback and deadline options, as the library's keyword arguments take them."""

    fallback: FallbackMode = "any"
    deadline_s: float | None = None
    degrade: bool = False


def options_from_headers(headers: Mapping[str, str]) -> RequestOptions:
    """Read ``x-imagegate-fallback``, ``x-imagegate-deadline-s`` and ``x-imagegate-degrade``
    (lower-case names, as ASGI gives them); a bad value is an ``InvalidRequest`` naming it."""
    mode = parse_mode(headers.get(FALLBACK_HEADER))
    deadline: float | None = None
    raw = headers.get(DEADLINE_HEADER)
    if raw is not None:
        try:
            deadline = float(raw)
        except ValueError:
            deadline = None
        if deadline is None or not math.isfinite(deadline) or deadline <= 0:
            raise InvalidRequest.for_field(DEADLINE_HEADER, raw, "a number of seconds > 0")
    degrade = False
    flag = headers.get(DEGRADE_HEADER)
    if flag is not None:
        if flag.strip().lower() not in _TRUE | _FALSE:
            raise InvalidRequest.for_field(DEGRADE_HEADER, flag, "true or false")
        degrade = flag.strip().lower() in _TRUE
    return RequestOptions(fallback=mode, deadline_s=deadline, degrade=degrade)


def dialect_of(dep: DeploymentConfig) -> str:
    """The wire dialect validation narrows to (``openai``, ``azure-deployments``, ``azure-v1``)."""
    return "openai" if dep.kind == "openai" else f"azure-{dep.route}"


@dataclass(frozen=True, slots=True)
class Target:
    """Deployments of one model reached through one configured name (group, deployment, model)."""

    name: str
    model: str
    deployments: tuple[DeploymentConfig, ...]

    @property
    def label(self) -> str:
        return self.model if self.name == self.model else f"{self.model} via {self.name}"


def fallback_order(cfg: ImageGateConfig, name: str) -> tuple[str, ...]:
    """``name`` then its configured fallbacks, depth first (a fallback's own fallbacks follow
    it), each name once (cycles are cut)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        order.append(name)
        entry = cfg.routing.get(name)
        for fb in entry.fallbacks if entry is not None else ():
            visit(fb)

    visit(name)
    return tuple(order)


def targets(cfg: ImageGateConfig, requested: str | None) -> tuple[Target, ...]:
    """The requested name, then its configured fallbacks depth first, as per-model targets; each
    deployment appears once (in its first target). Raises ``InvalidRequest`` for an unknown name."""
    order = fallback_order(cfg, cfg.default_model if requested is None else requested)
    used: set[str] = set()
    out: list[Target] = []
    for index, name in enumerate(order):
        deps = cfg.deployments_for(requested if index == 0 else name)
        by_model: dict[str, list[DeploymentConfig]] = {}
        for dep in deps:
            if dep.name not in used:
                by_model.setdefault(dep.model, []).append(dep)
                used.add(dep.name)
        out.extend(Target(name, model, tuple(members)) for model, members in by_model.items())
    return tuple(out)


def split_n(n: int, n_max: int) -> tuple[int, ...]:
    """``n`` images as calls of at most ``n_max`` each (``split_n(5, 2) == (2, 2, 1)``)."""
    if n <= 0:
        return ()
    per = max(1, n_max)
    calls = math.ceil(n / per)
    return tuple(min(per, n - i * per) for i in range(calls))


@dataclass(frozen=True, slots=True)
class Step:
    """One model to try: its deployments, the request for one call (``n`` = the largest call),
    the changes made to get there, and the most images one call may ask for."""

    target: Target
    spec: ModelSpec
    request: ImageRequest
    changes: tuple[Change, ...]
    primary: bool = False

    @property
    def n_max(self) -> int:
        return self.spec.n_max


@dataclass(frozen=True, slots=True)
class Skipped:
    target: Target
    reason: str


@dataclass(frozen=True, slots=True)
class Chain:
    steps: tuple[Step, ...]
    skipped: tuple[Skipped, ...] = ()


def _fallback_step(
    target: Target, original: ImageRequest, catalog: Catalog, primary: ModelSpec, *, stream: bool
) -> Step | Skipped:
    spec = catalog.get(target.model)
    primary_model = primary.name
    if stream and not spec.streaming:
        return Skipped(target, f"{target.label} does not stream partial images")
    changes: list[Change] = []
    req = replace(original, model=target.name)
    if (
        original.response_format is None
        and "url" not in primary.response_formats
        and ({"url", "b64_json"} <= set(spec.response_formats))
    ):
        # the primary returns image bytes; a model that defaults to URLs must too
        why = f"{primary_model} returns base64 images; {spec.name} is asked for the same"
        changes.append(Change("response_format", None, "b64_json", why))
        req = replace(req, response_format="b64_json")
    calls = split_n(original.n, spec.n_max)
    if len(calls) > 1:
        why = f"{spec.name} makes at most {spec.n_max} image(s) per call: {len(calls)} calls, images merged"
        changes.append(Change("n", original.n, calls[0], why))
        req = replace(req, n=calls[0])
    try:
        checked: Validated = validate(
            req, spec, catalog, translate=True, dialect=dialect_of(target.deployments[0])
        )
    except InvalidRequest as exc:
        return Skipped(target, f"{target.label} cannot take this request: {exc.message}")
    # the caller asked for the primary model; say what serves instead, and where
    where = ", ".join(d.name for d in target.deployments)
    model_change = Change("model", primary_model, target.label, f"fallback to {where}")
    return Step(target, spec, checked.request, (model_change, *changes, *checked.changes))


def chain_steps(
    cfg: ImageGateConfig,
    catalog: Catalog,
    *,
    original: ImageRequest,
    primary: Validated,
    primary_changes: Sequence[Change] = (),
    mode: FallbackMode = "any",
    stream: bool = False,
    allowed: Collection[str] | None = None,
) -> Iterator[Step | Skipped]:
    """The chain one step at a time (see the module docstring), so a step is only translated
    and validated (edit images decoded) when the chain reaches it. ``primary`` is the validated
    request for the requested model; ``original`` is the request as the caller gave it;
    ``stream``: the caller wants partial images, so models that do not stream are skipped;
    ``allowed``: the names a fallback may be reached by (``may_serve``; ``None``: any)."""
    reachable = chain_targets(cfg, original.model, primary.spec.name, mode=mode)
    if not reachable:
        return
    head, *rest = reachable
    yield Step(head, primary.spec, primary.request, tuple(primary_changes), primary=True)
    for target in rest:
        if not may_serve(target, allowed):
            yield Skipped(target, f"{target.label} is not among the models this caller may use")
            continue
        yield _fallback_step(target, original, catalog, primary.spec, stream=stream)


def may_serve(target: Target, allowed: Collection[str] | None) -> bool:
    """Whether a caller limited to ``allowed`` names may be served by ``target``: when it names
    the target's group, deployment or catalog model (what it could have asked for itself)."""
    return allowed is None or target.name in allowed or target.model in allowed


def chain_targets(
    cfg: ImageGateConfig, requested: str | None, model: str, *, mode: FallbackMode = "any"
) -> tuple[Target, ...]:
    """The targets a request for ``requested``, validated for catalog ``model``, may be served
    by under ``mode``: the primary first, then the fallbacks in order (empty when no deployment
    of ``requested`` serves ``model``)."""
    all_targets = targets(cfg, requested)
    head = next((t for t in all_targets if t.model == model), None)
    if head is None:
        return ()
    if mode == "none":
        return (head,)
    return (head, *(t for t in all_targets if t is not head and (mode == "any" or t.model == model)))


def build_chain(
    cfg: ImageGateConfig,
    catalog: Catalog,
    *,
    original: ImageRequest,
    primary: Validated,
    primary_changes: Sequence[Change] = (),
    mode: FallbackMode = "any",
    stream: bool = False,
    allowed: Collection[str] | None = None,
) -> Chain:
    """The whole chain at once (``chain_steps``, collected)."""
    items = list(
        chain_steps(
            cfg,
            catalog,
            original=original,
            primary=primary,
            primary_changes=primary_changes,
            mode=mode,
            stream=stream,
            allowed=allowed,
        )
    )
    return Chain(
        tuple(i for i in items if isinstance(i, Step)), tuple(i for i in items if isinstance(i, Skipped))
    )


def moves_on(error: ImageGateError) -> bool:
    """Whether the chain may try the next model after ``error`` (module docstring)."""
    if isinstance(error, NoDeploymentAvailable | UpstreamNotSent | UpstreamRejected | DeadlineExceeded):
        return True
    if isinstance(error, RateLimited):
        return True
    if isinstance(error, UpstreamStatusError):
        return error.status_code >= 500
    return False


# ---------------------------------------------------------------------------------------------
# deadlines


@dataclass(frozen=True, slots=True)
class Fit:
    """Send at ``quality`` (``change`` is set when it was lowered for the deadline)."""

    quality: str | None
    change: Change | None = None


@dataclass(frozen=True, slots=True)
class TooSlow:
    quality: str
    needed_s: float
    reason: str


def _rank(quality: str, spec: ModelSpec, catalog: Catalog) -> int:
    if quality in catalog.quality_ranks:
        return catalog.quality_ranks[quality]
    return max((catalog.quality_ranks.get(q, 0) for q in spec.qualities), default=0) + 1  # "auto"


def fit_deadline(
    spec: ModelSpec,
    catalog: Catalog,
    *,
    quality: str | None,
    remaining_s: float,
    expected_s: Mapping[str, float],
    degrade: bool,
) -> Fit | TooSlow:
    """Whether a call at ``quality`` is expected to finish in ``remaining_s``. ``expected_s`` maps
    each quality of ``spec`` to its expected seconds (a quality without a figure always fits)."""
    wanted = quality or spec.default_quality
    need = expected_s.get(wanted)
    if remaining_s > 0 and (need is None or need <= remaining_s):
        return Fit(quality)
    if need is None:
        return TooSlow(wanted, 0.0, "the deadline has passed")
    if degrade and remaining_s > 0:
        rank = _rank(wanted, spec, catalog)
        lower = sorted(
            (q for q in spec.qualities if q in catalog.quality_ranks and catalog.quality_ranks[q] < rank),
            key=lambda q: -catalog.quality_ranks[q],
        )
        for q in lower:
            took = expected_s.get(q)
            if took is not None and took <= remaining_s:
                why = (
                    f"{DEGRADED_REASON} ({remaining_s:.1f} s left; {wanted} needs ~{need:.1f} s, "
                    f"{q} ~{took:.1f} s)"
                )
                return Fit(q, Change("quality", wanted, q, why))
    hint = (
        ""
        if degrade
        else "; allow degrade=True (HTTP gateway: x-imagegate-degrade: true) for a lower quality"
    )
    reason = f"{spec.name} at {wanted} needs ~{need:.1f} s, {max(remaining_s, 0.0):.1f} s left{hint}"
    return TooSlow(wanted, need, reason)

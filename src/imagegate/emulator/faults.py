"""Scripted faults per deployment: which ones apply to the next request.

A script is a list of :class:`FaultSpec` rules, installed from the config file at start and
replaced at run time by ``PUT /_emulator/deployments/{name}/faults``. Time windows (``start_s``,
``duration_s``) count from the moment the script was installed, on the injected clock; ``count``
limits a rule to the next N requests it fires on; ``probability`` draws from a seeded generator.

Rules sort into three groups, applied at different moments of a request:

- *refusals* (answer instead of the model, nothing billed): ``status`` (a 4xx/5xx storm; 429 uses
  the call-rate body), ``outage`` (``mode: refuse`` drops the connection without a response,
  ``mode: 503`` answers 503), ``hang`` with ``phase: before``;
- *delivery faults* (the image was generated and billed, then delivery goes wrong): ``hang``
  (``phase: after``, the default), ``slow_body`` (the body trickles over ``delay_s``),
  ``drop_mid_body`` (half the body, then the connection closes), ``malformed_json`` (a truncated
  JSON body with status 200), ``stream_error`` (streamed responses only: an ``error`` event with the
  500 envelope ends the stream after the first partial image, or replaces the completed event when
  there are none; not billed [I]);
- *modifiers*: ``usage_missing`` (no ``usage`` in the success body), ``retry_after_missing`` (429s
  without retry-after headers).

Fault delays (``delay_s``) are real emulated seconds through the injected sleep; the time scale
does not shrink them, so a hang stays a hang when latency is switched off.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from imagegate.emulator.config import FaultSpec

REFUSALS = frozenset({"status", "outage"})
DELIVERY = frozenset({"hang", "slow_body", "drop_mid_body", "malformed_json", "stream_error"})
MODIFIERS = frozenset({"usage_missing", "retry_after_missing"})


@dataclass(slots=True)
class _Rule:
    spec: FaultSpec
    fired: int = 0


@dataclass(slots=True)
class FaultPlan:
    """The faults chosen for one request."""

    refusal: FaultSpec | None = None
    delivery: FaultSpec | None = None
    usage_missing: bool = False
    retry_after_missing: bool = False
    names: list[str] = field(default_factory=list)


class FaultScript:
    """The live fault rules of one deployment."""

    def __init__(self, specs: tuple[FaultSpec, ...], *, installed_at: float, seed: int) -> None:
        self._rules = [_Rule(s) for s in specs]
        self.installed_at = installed_at
        self._rng = random.Random(seed)

    @property
    def specs(self) -> tuple[FaultSpec, ...]:
        return tuple(r.spec for r in self._rules)

    def describe(self) -> list[dict[str, object]]:
        return [{**r.spec.model_dump(mode="json"), "fired": r.fired} for r in self._rules]

    def _active(self, rule: _Rule, now: float, route: str) -> bool:
        spec = rule.spec
        if spec.routes is not None and route not in spec.routes:
            return False
        if spec.count is not None and rule.fired >= spec.count:
            return False
        elapsed = now - self.installed_at
        if elapsed < spec.start_s:
            return False
        if spec.duration_s is not None and elapsed >= spec.start_s + spec.duration_s:
            return False
        return spec.probability >= 1.0 or self._rng.random() < spec.probability

    def plan(self, now: float, route: str) -> FaultPlan:
        """Choose the faults for a request arriving at ``now`` on ``route``; first match wins per
        group, and only rules that apply are counted as fired."""
        plan = FaultPlan()
        for rule in self._rules:
            kind = rule.spec.kind
            is_refusal = kind in REFUSALS or (kind == "hang" and rule.spec.phase == "before")
            if is_refusal and plan.refusal is not None:
                continue
            if kind in DELIVERY and not is_refusal and plan.delivery is not None:
                continue
            if not self._active(rule, now, route):
                continue
            rule.fired += 1
            plan.names.append(kind)
            if is_refusal:
                plan.refusal = rule.spec
            elif kind in DELIVERY:
                plan.delivery = rule.spec
            elif kind == "usage_missing":
                plan.usage_missing = True
            else:
                plan.retry_after_missing = True
        return plan

"""``FallbackStage``: walk the fallback chain, split ``n`` into calls, merge what came back.

Thin driver around ``policy.fallback``: it builds the chain, checks each step against the
request's deadline (``fit_deadline``, fed by the routing scheduler's learnt latencies through
``LatencySource``, else the catalog's typical latency), runs the rest of the pipeline
(route → cost → upstream) once per call with a copy of the context narrowed to the step, and
merges the results. Calls of one step run concurrently (routing gates them by quota); images a
step could not make move on to the next step, so a partial success is never thrown away: every
image that was made (and billed) is on the result. When some images could not be made at all,
the result says so with a ``Change`` on ``n`` rather than failing and losing the others.

The deadline check reads the same per-(deployment, quality) estimates that routing admission
and ranking use (``Scheduler.learnt_latency_s``), so both decide on the same numbers; without
a scheduler only the catalog's ``typical_latency_s`` is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

import anyio

from imagegate.catalog import Catalog
from imagegate.config import ImageGateConfig
from imagegate.errors import DeadlineExceeded, ImageGateError, NoDeploymentAvailable
from imagegate.pipeline.context import RequestContext
from imagegate.pipeline.stages import Next
from imagegate.policy.fallback import (
    Fit,
    Skipped,
    Step,
    TooSlow,
    chain_steps,
    fit_deadline,
    moves_on,
    split_n,
)
from imagegate.policy.validation import Validated
from imagegate.types import AttemptRecord, Change, Cost, ImageResult, Usage

__all__ = ["FallbackStage", "LatencySource"]


class LatencySource(Protocol):
    """Read-only learnt latencies (``routing.Scheduler`` is one)."""

    async def learnt_latency_s(self, name: str) -> Mapping[str, float]:
        """Learnt seconds per quality for deployment ``name`` (qualities never observed absent)."""
        ...


@dataclass
class _Outcome:
    results: list[ImageResult]
    errors: list[ImageGateError]


class FallbackStage:
    """Between validation and routing: the fallback chain, deadlines and ``n`` splitting."""

    def __init__(
        self,
        config: ImageGateConfig,
        catalog: Catalog,
        *,
        clock: Callable[[], float] = time.monotonic,
        latencies: LatencySource | None = None,
    ) -> None:
        self._config = config
        self._catalog = catalog
        self._clock = clock
        self._latencies = latencies

    async def _expected(self, step: Step) -> dict[str, float]:
        """Seconds per quality for a step: the best deployment's observation, else the catalog's."""
        learnt: list[Mapping[str, float]] = []
        if self._latencies is not None:
            learnt = [await self._latencies.learnt_latency_s(d.name) for d in step.target.deployments]
        out: dict[str, float] = {}
        for quality in step.spec.qualities:
            known = [seen[quality] for seen in learnt if quality in seen]
            typical = step.spec.typical_latency_for(quality)
            if known:
                out[quality] = min(known)
            elif typical is not None:
                out[quality] = typical
        return out

    async def __call__(self, ctx: RequestContext, call_next: Next) -> ImageResult:
        start = self._clock()
        if ctx.deadline is None:
            ctx.deadline = start + self._config.retry.deadline_s
        assert ctx.spec is not None and ctx.original is not None  # set by ValidateStage
        chain = chain_steps(
            self._config,
            self._catalog,
            original=ctx.original,
            primary=Validated(ctx.request, ctx.spec, ctx.changes),
            primary_changes=ctx.changes,
            mode=ctx.fallback,
            stream=ctx.on_partial is not None,
            allowed=ctx.fallback_models,
        )
        wanted = ctx.original.n
        primary: Step | None = None
        made: list[tuple[Step, ImageResult, tuple[Change, ...]]] = []
        failures: list[tuple[Step, ImageGateError]] = []
        attempts: list[AttemptRecord] = []
        terminal: ImageGateError | None = None
        previous = ""
        for step in chain:
            missing = wanted - sum(len(r.images) for _, r, _ in made)
            if missing <= 0:
                break
            if isinstance(step, Skipped):
                continue  # cannot take this request at all (edits, prompt length, streaming)
            primary = primary or step
            fit = fit_deadline(
                step.spec,
                self._catalog,
                quality=step.request.quality,
                remaining_s=ctx.deadline - self._clock(),
                expected_s=await self._expected(step),
                degrade=ctx.degrade,
            )
            if isinstance(fit, TooSlow):
                failures.append((step, _too_slow(fit, ctx.deadline - self._clock())))
                previous = f"{step.target.label} too slow for the deadline"
                continue
            changes = self._changes(step, fit, previous)
            outcome = await self._run_step(ctx, step, fit, missing, changes, call_next)
            for result in outcome.results:
                made.append((step, result, changes))
                attempts.extend(result.attempts)
            for error in outcome.errors:
                attempts.extend(error.attempts)
            if outcome.errors:
                # a content-filter hit (or any error that must not move on) ends the chain
                blocking = next((e for e in outcome.errors if not moves_on(e)), None)
                error = blocking or outcome.errors[0]
                failures.append((step, error))
                previous = f"{step.target.label}: {error.code}"
                if blocking is not None:
                    terminal = blocking
                    break
        if primary is None:
            raise NoDeploymentAvailable(f"no deployment serves model {ctx.spec.name!r}")
        if not made:
            raise self._failure(failures, terminal, attempts)
        return self._merge(primary, made, wanted, failures, attempts, start)

    @staticmethod
    def _changes(step: Step, fit: Fit, previous: str) -> tuple[Change, ...]:
        changes = list(step.changes)
        if previous and changes and changes[0].field == "model" and not step.primary:
            first = changes[0]
            changes[0] = Change(first.field, first.old, first.new, f"{first.reason} after {previous}")
        if fit.change is not None:
            changes.append(fit.change)
        return tuple(changes)

    async def _run_step(
        self,
        ctx: RequestContext,
        step: Step,
        fit: Fit,
        missing: int,
        changes: tuple[Change, ...],
        call_next: Next,
    ) -> _Outcome:
        outcome = _Outcome([], [])
        calls = split_n(missing, step.n_max)
        slots: list[ImageResult | ImageGateError | None] = [None] * len(calls)

        async def one(index: int, n: int) -> None:
            request = replace(step.request, n=n, quality=fit.quality)
            sub = replace(
                ctx,
                request=request,
                candidates=step.target.deployments,
                spec=step.spec,
                changes=changes,
                plan=(),
                notes=dict(ctx.notes),
            )
            try:
                result = await call_next(sub)
            except ImageGateError as error:
                slots[index] = error
                return
            slots[index] = _stamped(result)

        if len(calls) == 1:
            await one(0, calls[0])
        else:
            async with anyio.create_task_group() as tg:
                for index, n in enumerate(calls):
                    tg.start_soon(one, index, n)
        for slot in slots:
            if isinstance(slot, ImageResult):
                outcome.results.append(slot)
            elif isinstance(slot, ImageGateError):
                outcome.errors.append(slot)
        return outcome

    def _failure(
        self,
        failures: Sequence[tuple[Step, ImageGateError]],
        terminal: ImageGateError | None,
        attempts: Sequence[AttemptRecord],
    ) -> ImageGateError:
        """The error to raise when no image was made."""
        if terminal is not None or len(failures) == 1:
            error = terminal if terminal is not None else failures[0][1]
            error.attempts = _renumbered(attempts)
            return error
        summary = "; ".join(f"{step.target.label}: {error.message}" for step, error in failures)
        if all(isinstance(error, DeadlineExceeded) for _, error in failures):
            needs = [e.needed_s for _, e in failures if isinstance(e, DeadlineExceeded) and e.needed_s]
            remaining = min(e.remaining_s for _, e in failures if isinstance(e, DeadlineExceeded))
            combined: ImageGateError = DeadlineExceeded(
                f"no model in the fallback chain can finish before the deadline ({summary})",
                remaining_s=remaining,
                needed_s=min(needs) if needs else None,
            )
        else:
            waits = [
                w for _, e in failures if isinstance(w := getattr(e, "retry_after_s", None), int | float)
            ]
            combined = NoDeploymentAvailable(
                f"no model in the fallback chain could serve ({summary})",
                retry_after_s=min(waits) if waits else None,
            )
        combined.attempts = _renumbered(attempts)
        return combined

    def _merge(
        self,
        primary: Step,
        made: Sequence[tuple[Step, ImageResult, tuple[Change, ...]]],
        wanted: int,
        failures: Sequence[tuple[Step, ImageGateError]],
        attempts: Sequence[AttemptRecord],
        start: float,
    ) -> ImageResult:
        _, first, _ = made[0]
        images = tuple(image for _, result, _ in made for image in result.images)
        changes: list[Change] = []
        for _, _, step_changes in made:
            changes.extend(c for c in step_changes if c not in changes)
        if len(images) < wanted:
            why = "; ".join(f"{step.target.label}: {error.code}" for step, error in failures) or "unknown"
            changes.append(
                Change("n", wanted, len(images), f"only {len(images)} of {wanted} image(s) made ({why})")
            )
        from_other = any(not step.primary for step, _, _ in made)
        return replace(
            first,
            images=images,
            usage=_sum_usage([r.usage for _, r, _ in made]),
            cost=_sum_cost([r.cost for _, r, _ in made]),
            latency_s=self._clock() - start,
            attempts=_renumbered(attempts),
            changes=tuple(changes),
            degraded=any(c.reason.startswith("degraded: deadline") for c in changes),
            fallback_from=primary.spec.name if from_other else None,
        )


def _too_slow(fit: TooSlow, remaining_s: float) -> DeadlineExceeded:
    return DeadlineExceeded(fit.reason, remaining_s=remaining_s, needed_s=fit.needed_s, quality=fit.quality)


def _stamped(result: ImageResult) -> ImageResult:
    """Each image names the model and deployment that made it."""
    images = tuple(replace(i, model=result.model, deployment=result.deployment) for i in result.images)
    return replace(result, images=images)


def _renumbered(attempts: Sequence[AttemptRecord]) -> tuple[AttemptRecord, ...]:
    return tuple(replace(a, number=i) for i, a in enumerate(attempts, start=1))


def _sum_usage(usages: Sequence[Usage | None]) -> Usage | None:
    known = [u for u in usages if u is not None]
    if not known:
        return None
    if len(known) == 1:
        return known[0]

    def opt(values: list[int | None]) -> int | None:
        present = [v for v in values if v is not None]
        return sum(present) if present else None

    return Usage(
        input_tokens=sum(u.input_tokens for u in known),
        output_tokens=sum(u.output_tokens for u in known),
        total_tokens=sum(u.total_tokens for u in known),
        input_text_tokens=sum(u.input_text_tokens for u in known),
        input_image_tokens=sum(u.input_image_tokens for u in known),
        output_image_tokens=opt([u.output_image_tokens for u in known]),
        output_text_tokens=opt([u.output_text_tokens for u in known]),
    )


def _sum_cost(costs: Sequence[Cost | None]) -> Cost | None:
    known = [c for c in costs if c is not None]
    if not known:
        return None
    if len(known) == 1:
        return known[0]
    sources: list[str] = []
    for c in known:
        if c.source not in sources:
            sources.append(c.source)
    return Cost(
        usd=sum((c.usd for c in known), Decimal(0)),
        source="; ".join(sources),
        estimated=any(c.estimated for c in known),
    )

"""The gateway's ``ImageBackend`` over the library face, ``AsyncImageGate``.

The HTTP gateway runs exactly the request path the Python library runs (validation and
translation, routing, the upstream attempt loop, pricing: ``pipeline/build.py``); this adapter
only maps the parsed HTTP request onto ``AsyncImageGate``'s public methods. A request cancelled
(a shutdown) carries the attempts it had made on its cancellation, as an error carries them: the
service keeps the estimate on the budget only when one of them may have been billed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import fields, replace
from decimal import Decimal
from typing import Any

from imagegate.api import AsyncImageGate
from imagegate.errors import ImageGateError, InvalidRequest
from imagegate.policy.fallback import chain_targets, dialect_of, may_serve, parse_mode
from imagegate.policy.pricing import reservation_estimate
from imagegate.policy.validation import validate
from imagegate.server.backend import NO_OPTIONS, StreamItem
from imagegate.server.options import RequestOptions
from imagegate.types import AttemptRecord, EditRequest, ImageRequest, ImageResult
from imagegate.upstream.client import AttemptsSeen

__all__ = ["DEFAULT_PARTIAL_IMAGES", "LibraryBackend"]

DEFAULT_PARTIAL_IMAGES = 2  # partial images of a stream that asks for no number

_GENERATE = ("n", "size", "quality", "output_format", "output_compression", "background", "moderation")
_GENERATE_MORE = ("style", "response_format", "user")
_EDIT = (
    "n",
    "size",
    "quality",
    "input_fidelity",
    "output_format",
    "output_compression",
    "background",
    "user",
)


def _given(request: ImageRequest, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(request, name) for name in names if getattr(request, name) is not None}


class LibraryBackend:
    def __init__(self, gate: AsyncImageGate) -> None:
        self.gate = gate

    async def generate(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult:
        if isinstance(request, EditRequest):
            return await self.edit(request, request_id=request_id, options=options)
        params = _given(request, (*_GENERATE, *_GENERATE_MORE))
        return await _keeping_attempts(
            self.gate.generate(request.prompt, model=request.model, **params, **options.kwargs())
        )

    async def edit(
        self, request: EditRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> ImageResult:
        return await _keeping_attempts(
            self.gate.edit(
                [image.data for image in request.images],
                request.prompt,
                mask=request.mask.data if request.mask is not None else None,
                model=request.model,
                **_given(request, _EDIT),
                **options.kwargs(),
            )
        )

    async def stream(
        self, request: ImageRequest, *, request_id: str, options: RequestOptions = NO_OPTIONS
    ) -> AsyncIterator[StreamItem]:
        spec = self.gate.spec_for(request.model)
        if not spec.streaming:  # say so about what the client sent, not the partial_images default
            raise InvalidRequest.for_field(
                "stream", True, f"false for {spec.name}, which does not stream partial images"
            )
        params: dict[str, Any] = {"model": request.model, **options.kwargs()}
        if isinstance(request, EditRequest):
            params.update(_given(request, _EDIT))
            params["images"] = [image.data for image in request.images]
            params["mask"] = request.mask.data if request.mask is not None else None
        else:
            params.update(_given(request, (*_GENERATE, *_GENERATE_MORE)))
        partial = request.partial_images if request.partial_images is not None else DEFAULT_PARTIAL_IMAGES
        # ``AsyncImageGate.stream`` holds a task group, which must be entered and left in one task;
        # the HTTP response consumes this iterator from another task (Starlette streams the
        # body in its own), so a pump task owns the library stream and hands items over.
        queue: asyncio.Queue[StreamItem | BaseException | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                stream = self.gate.stream(request.prompt, partial_images=partial, **params)
                async with contextlib.aclosing(stream):  # type: ignore[type-var]
                    async for item in stream:
                        await queue.put(item)
                await queue.put(None)
            except Exception as exc:  # delivered to the consumer, which raises it
                await queue.put(exc)

        with AttemptsSeen() as seen:  # the pump's copy of this context shares the list
            task = asyncio.create_task(pump())
        stopped: BaseException | None = None
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        except BaseException as exc:
            stopped = exc
            raise
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if stopped is not None:  # once the pump has recorded the attempt it was making
                _tried(stopped, seen)

    def estimate_usd(
        self, request: ImageRequest, options: RequestOptions = NO_OPTIONS, *, stream: bool = False
    ) -> Decimal:
        """The most the request may be billed, to hold against budgets (``policy.pricing.
        reservation_estimate``): the highest over every model and deployment that may serve it
        (the fallback chain under ``options``), since a costlier fallback must fit the budget too.
        A request no deployment serves holds nothing: the pipeline refuses it before sending.

        The request is first checked as the pipeline will check it for the first deployment of
        its model (translated when the header, else the configuration, asks): a request that
        would be refused is refused here, before anything is held, with a 400 naming the field,
        not a 500 for a negative ``n`` or a 429 for the hold of an absurd one. Edit images are
        inspected once, by the pipeline, not here."""
        config, catalog = self.gate.config, self.gate.catalog
        try:
            model = self.gate.spec_for(request.model).name
            mode = parse_mode(options.fallback)
        except (ImageGateError, KeyError, ValueError):
            return Decimal(0)
        first = config.deployments_for(request.model)
        if first:
            translate = config.translate if options.translate is None else options.translate
            validate(
                _parameters_of(request),
                catalog.get(first[0].model),
                catalog,
                translate=translate,
                dialect=dialect_of(first[0]),
            )
        allowed = options.fallback_models
        reachable = [
            t
            for i, t in enumerate(chain_targets(config, request.model, model, mode=mode))
            if i == 0 or may_serve(t, allowed)
        ]
        partial = 0
        if stream:
            partial = request.partial_images if request.partial_images is not None else DEFAULT_PARTIAL_IMAGES
        edit = request if isinstance(request, EditRequest) else None
        return max(
            (
                reservation_estimate(
                    catalog.get(target.model),
                    size=request.size,
                    quality=request.quality,
                    n=request.n,
                    prompt=request.prompt,
                    partial_images=partial,
                    input_images=len(edit.images) if edit else 0,
                    high_fidelity=edit is not None and edit.input_fidelity == "high",
                    override=dep.price_override,
                )
                for target in reachable
                for dep in target.deployments
            ),
            default=Decimal(0),
        )

    def quality_of(self, request: ImageRequest) -> str | None:
        if request.quality is not None:
            return request.quality
        try:
            return self.gate.spec_for(request.model).default_quality
        except (ImageGateError, KeyError, ValueError):
            return None


async def _keeping_attempts(work: Awaitable[ImageResult]) -> ImageResult:
    """Await ``work``; if it fails or is cancelled, the attempts it made go on what it raised."""
    with AttemptsSeen() as seen:
        try:
            return await work
        except BaseException as exc:
            _tried(exc, seen)
            raise


def _tried(exc: BaseException, seen: Sequence[AttemptRecord]) -> None:
    """Put on a cancellation the attempts made before it, numbered in order as the pipeline
    numbers a request's attempts (an error of the tree carries its own)."""
    if not isinstance(exc, Exception):
        exc.attempts = tuple(replace(a, number=i) for i, a in enumerate(seen, start=1))  # type: ignore[attr-defined]


def _parameters_of(request: ImageRequest) -> ImageRequest:
    """The parameters of a request as a plain ``ImageRequest`` (an edit's without its images:
    validation does not open them here, the pipeline does)."""
    if type(request) is ImageRequest:
        return request
    return ImageRequest(**{f.name: getattr(request, f.name) for f in fields(ImageRequest)})

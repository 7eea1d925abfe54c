"""One image request through the gateway: governance around the backend, then the bytes out.

Routes parse; this module decides the order of the steps and encodes the answer::

    authorize → rate → idempotency claim → reserve → backend (pipeline) → settle → record
              → encode (b64 as received, or stored once and served by signed URL) → complete claim

An ``Idempotency-Key`` makes a request run at most once per key and body: a repeat while the
first runs waits for it, a repeat after it replays the stored response byte for byte, and the
same key with another body is a 409. Nothing is billed twice. Answers are kept, and image URLs
in a replayed one signed anew, by ``server.replays``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.responses import Response

from imagegate.errors import (
    BudgetExceeded,
    ImageGateError,
    InvalidRequest,
    RateLimited,
    ShuttingDown,
    StorageError,
    UpstreamFailed,
)
from imagegate.policy.keys import RequestScope
from imagegate.ports import BlobRef, BlobStore, ClaimStatus, IdempotencyStore, Reservation
from imagegate.server import replays
from imagegate.server.backend import ImageBackend
from imagegate.server.errors import internal_error_response, render_error
from imagegate.server.governance import (
    CANCELLED,
    REPLAYED,
    UNDELIVERED,
    Caller,
    Governance,
    Outcome,
    credential_from,
)
from imagegate.server.metrics import GatewayMetrics
from imagegate.server.options import options_from_headers
from imagegate.server.parsing import ParsedCall
from imagegate.server.responses import (
    ClosingStreamingResponse,
    SlicedResponse,
    encode_images,
    result_headers,
    usage_payload,
)
from imagegate.server.sse import SSE_HEADERS, encode_event, error_event, event_prefix
from imagegate.types import AttemptRecord, EditRequest, ImageRequest, ImageResult, PartialImage

__all__ = ["IDEMPOTENCY_LEASE_S", "ImageService"]

log = logging.getLogger("imagegate.server")

_FORMAT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# An Idempotency-Key's claim must outlast the longest request, or a retry takes it over while the
# first still runs: ``x-imagegate-deadline-s`` allows up to 3600 s (``create_app`` raises it to a
# longer ``retry.deadline_s``), plus a margin for the response to be stored.
IDEMPOTENCY_LEASE_S = 3600.0 + 300.0
IDEMPOTENCY_TTL_S = 24 * 3600.0
IDEMPOTENCY_POLL_S = 0.25
CLIENT_CLOSED = 499  # nginx's status for a request the client abandoned (ledger and audit only)


@dataclass
class ImageService:
    backend: ImageBackend
    governance: Governance
    metrics: GatewayMetrics
    default_model: str = "default"
    url_ttl_s: float = 3600.0
    blobs: BlobStore | None = None
    idempotency: IdempotencyStore | None = None
    idempotency_lease_s: float = IDEMPOTENCY_LEASE_S
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    _replays: replays.Replays = field(init=False)
    _running: int = field(default=0, init=False)  # image requests not finished: not sent and recorded
    _idle: anyio.Event | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._replays = replays.Replays(self.blobs, self._url)

    # ------------------------------------------------------------------ entry point

    async def handle(
        self,
        call: ParsedCall,
        *,
        headers: Mapping[str, str],
        request_id: str,
        origin: str,
        state: dict[str, Any],
    ) -> Response:
        self._begin()
        response: Response | None = None
        try:
            response = await self._handle(
                call, headers=headers, request_id=request_id, origin=origin, state=state
            )
            return response
        except BudgetExceeded:
            self.metrics.rate_limited.labels("budget").inc()
            raise
        finally:
            # A made response ends the request once it is sent and recorded (``_recorded``), or
            # once its client is gone: until then a shutdown waits for it (``wait_idle``).
            if not isinstance(response, ClosingStreamingResponse | SlicedResponse):
                self._end()

    def _begin(self) -> None:
        self.metrics.in_flight.inc()
        self._running += 1

    def _end(self) -> None:
        self.metrics.in_flight.dec()
        self._running -= 1
        if not self._running and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` until no image request runs; how many still do. At shutdown,
        requests the server cancelled are still settling their holds and recording themselves:
        their rows must be queued before the ledger's write-behind closes."""
        with anyio.move_on_after(timeout_s):
            while self._running:
                self._idle = anyio.Event()
                await self._idle.wait()
        return self._running

    async def _handle(
        self,
        call: ParsedCall,
        *,
        headers: Mapping[str, str],
        request_id: str,
        origin: str,
        state: dict[str, Any],
    ) -> Response:
        request = call.request
        idem_key = headers.get("idempotency-key")
        started = self.governance.now()
        caller: Caller | None = None
        try:
            scope = RequestScope(
                logical_model=request.model or self.default_model,
                n=request.n,
                quality=self.backend.quality_of(request),
                quality_named=request.quality is not None,
            )
            record = await self.governance.identify(credential_from(headers))
            if record is not None:  # who asked, for the ledger, even if the key may not do this
                caller = Caller(key_id=record.id, key_name=record.name)
            caller = await self.governance.admit(record, scope)
            state["key_id"] = caller.key_id
            state["model"] = scope.logical_model
            options = options_from_headers(headers, stream=call.stream)
            if caller.models:  # a key limited to models is never served by another, not even a fallback
                options = replace(options, fallback_models=caller.models)
            call = replace(call, options=options)
            try:
                await self.governance.rate(caller)
            except RateLimited:  # the key's rpm; a 429 the pipeline gives up on is not the key's
                self.metrics.rate_limited.labels("key").inc()
                raise
            if call.response_format == "url" and self.blobs is None:
                raise InvalidRequest.for_field(
                    "response_format", "url", "b64_json (this gateway has no image store)"
                )
            if call.stream and idem_key:
                # A stream cannot be replayed, and ignoring the key would let the client's retry
                # buy a second image: refuse before anything is reserved or sent.
                raise InvalidRequest.for_field(
                    "Idempotency-Key",
                    idem_key,
                    "no Idempotency-Key with stream=true (a stream cannot be "
                    "replayed); send the request without streaming, or without the header",
                )
        except ImageGateError as exc:
            await self._refused(exc, caller, request, request_id, started, idem_key)
            raise
        if call.stream:
            return await self._stream(call, caller, request_id)
        if not idem_key or self.idempotency is None:
            response, _, _ = await self._run(call, caller, request_id, origin, idem_key)
            return response
        return await self._idempotent(call, caller, request_id, origin, idem_key)

    async def _refused(
        self,
        exc: ImageGateError,
        caller: Caller | None,
        request: ImageRequest,
        request_id: str,
        started: datetime,
        idem_key: str | None,
    ) -> None:
        """Record a request refused before anything was reserved or sent (401, 403, 429, 400, 409):
        it cost nothing, but who asked for what, and why not, belongs in the ledger and audit."""
        with anyio.CancelScope(shield=True):
            await self.governance.record(
                caller=caller, request=_without_images(request), request_id=request_id, started_at=started,
                error=exc, cost_exact=True, idempotency_key=idem_key, http_status=exc.http_status,
            )  # fmt: skip

    # ------------------------------------------------------------------ idempotency

    async def _idempotent(
        self, call: ParsedCall, caller: Caller, request_id: str, origin: str, idem_key: str
    ) -> Response:
        assert self.idempotency is not None
        fingerprint = replays.fingerprint(call)
        deadline = self.clock() + self.idempotency_lease_s
        started = self.governance.now()
        response: Response | None = None
        try:
            while True:
                now = self.governance.now()
                claim = await self.idempotency.claim(
                    caller.key_id, idem_key, fingerprint, now, lease_s=self.idempotency_lease_s
                )
                if claim.status is ClaimStatus.DONE and claim.record.response_ref:
                    response = await self._replays.replay(claim.record.response_ref, origin, idem_key)
                    break
                if claim.status is ClaimStatus.CLAIMED:
                    break
                if self.clock() > deadline:
                    raise StorageError(f"the request with Idempotency-Key {idem_key!r} is still running")
                await self.sleep(IDEMPOTENCY_POLL_S)  # another request holds the key: wait for it
        except ImageGateError as exc:
            await self._refused(exc, caller, call.request, request_id, started, idem_key)
            raise
        if response is not None:
            await self.governance.record(
                caller=caller, request=_without_images(call.request), request_id=request_id,
                started_at=started, cost_exact=True, idempotency_key=idem_key, outcome=REPLAYED,
                http_status=response.status_code,
            )  # fmt: skip
            return response
        try:
            response, stored, record = await self._run(call, caller, request_id, origin, idem_key)
        except ImageGateError as exc:
            await self._unanswered(exc, render_error(exc, request_id=request_id), caller, idem_key)
            raise
        except BaseException as exc:  # cancelled (a shutdown): its client gets a 503 (ErrorMiddleware)
            shutting_down = render_error(ShuttingDown(), request_id=request_id)
            await self._unanswered(exc, shutting_down, caller, idem_key)
            raise
        try:
            await self._keep(response, stored, caller, idem_key, request_id)
        except BaseException as exc:
            # Cancelled (a shutdown) before the answer went out, though the images were made and
            # billed: recorded as not delivered, and kept for the key all the same, so a retry
            # with it gets them (it would have waited out the claim, then failed).
            with anyio.CancelScope(shield=True):
                await record(**_not_delivered(exc))
                if isinstance(exc, Exception):
                    await self.idempotency.release(caller.key_id, idem_key)
                else:
                    await self._keep(response, stored, caller, idem_key, request_id)
            raise
        response.headers["x-imagegate-idempotent-replay"] = "false"
        return response

    async def _unanswered(self, exc: BaseException, answer: Response, caller: Caller, idem_key: str) -> None:
        """The key of a request that failed or was cancelled, ``answer`` being what its client
        got. If Azure may have made (and billed) the image, that answer is final for the key, or
        a retry would buy a second one (a new Idempotency-Key runs again); if nothing was billed,
        a retry with the same key may run again."""
        assert self.idempotency is not None
        with anyio.CancelScope(shield=True):
            if _may_have_billed(exc):
                ref = await self._replays.remember(answer)
                await self.idempotency.complete(
                    caller.key_id, idem_key, ref, self.governance.now(), ttl_s=IDEMPOTENCY_TTL_S
                )
            else:
                await self.idempotency.release(caller.key_id, idem_key)

    async def _keep(
        self,
        response: Response,
        images: tuple[BlobRef, ...],
        caller: Caller,
        idem_key: str,
        request_id: str,
    ) -> None:
        """Keep a made answer for the key's replays."""
        assert self.idempotency is not None
        try:
            ref = await self._replays.remember(response, images)
            await self.idempotency.complete(
                caller.key_id, idem_key, ref, self.governance.now(), ttl_s=IDEMPOTENCY_TTL_S
            )
        except ImageGateError as exc:
            # The images were made: answer with them. Nothing can be replayed, so free the key
            # rather than leave it claimed (a repeat would wait out the lease, then fail).
            log.error("could not keep the response for Idempotency-Key replays (%s): %s", request_id, exc)
            with anyio.CancelScope(shield=True):
                await self.idempotency.release(caller.key_id, idem_key)

    # ------------------------------------------------------------------ one run

    async def _call_backend(self, call: ParsedCall, request_id: str) -> ImageResult:
        request = call.request
        if isinstance(request, EditRequest):
            return await self.backend.edit(request, request_id=request_id, options=call.options)
        return await self.backend.generate(request, request_id=request_id, options=call.options)

    async def _guarded(
        self, caller: Caller, call: ParsedCall
    ) -> tuple[Reservation | None, datetime, Decimal]:
        started = self.governance.now()
        estimate = self.backend.estimate_usd(call.request, call.options, stream=call.stream)
        hold = await self.governance.reserve(caller, estimate)
        return hold, started, estimate

    async def _failed(
        self,
        exc: BaseException,
        caller: Caller,
        request: ImageRequest,
        request_id: str,
        hold: Reservation | None,
        started: datetime,
        estimate: Decimal,
        idem_key: str | None,
        *,
        streaming: bool = False,
    ) -> None:
        """Settle and record a failure (shielded: a client that hung up must not leave a budget
        hold behind). The estimate is kept when an attempt may have been billed: sent, with its
        outcome unknown (``_may_have_billed``). So is a stream's, abandoned once it was under way
        (``streaming``: its client went away, or a shutdown): its upstream call was generating.

        A request cancelled before its response started was cancelled by the server (a graceful
        shutdown): recorded with the 503 ``shutting_down`` its client got (``ErrorMiddleware``)
        and the attempts it had made (``LibraryBackend`` puts them on the cancellation); only one
        in flight, or one that may have been billed, keeps the estimate. An unexpected exception
        is an ``error``, ``internal_error``, 500."""
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class() | GeneratorExit)
        error = exc if isinstance(exc, ImageGateError) else None
        outcome = None
        if cancelled:
            outcome, status = CANCELLED, CLIENT_CLOSED if streaming else ShuttingDown.http_status
            if not streaming:
                error = ShuttingDown()
                error.attempts = tuple(getattr(exc, "attempts", ()))
        elif error is None:
            outcome, status = Outcome("error", "internal_error"), 500
        else:
            status = error.http_status
        billed = estimate if (cancelled and streaming) or _may_have_billed(error or exc) else None
        self._observe_attempts(error.attempts if error is not None else ())
        with anyio.CancelScope(shield=True):
            await self.governance.settle(hold, billed)
            await self.governance.record(
                caller=caller, request=request, request_id=request_id, started_at=started, error=error,
                cost_usd=billed or Decimal(0), cost_exact=billed is None, idempotency_key=idem_key,
                http_status=status, outcome=outcome,
            )  # fmt: skip

    async def _succeeded(
        self,
        result: ImageResult,
        caller: Caller,
        request: ImageRequest,
        request_id: str,
        hold: Reservation | None,
        started: datetime,
        estimate: Decimal,
        idem_key: str | None,
    ) -> Callable[..., Awaitable[None]]:
        """Settle the budget now (the next request must see it); return the ledger/audit write,
        which the caller runs after the response is sent (it is off the latency path, and its
        failures are logged, never turned into a failed response); its keywords override what
        it records (a response that could not be delivered)."""
        cost = result.cost.usd if result.cost is not None else estimate
        exact = result.cost is not None and not result.cost.estimated
        self._observe_attempts(result.attempts)
        await self.governance.settle(hold, cost)
        self.metrics.observe_images(model=result.model, operation=request.operation, count=len(result.images))
        self.metrics.observe_cost(model=result.model, deployment=result.deployment, usd=cost)
        # The deferred write must not keep the images alive while the response is being sent.
        slim = replace(result, images=())
        request = _without_images(request)
        return functools.partial(
            self.governance.record,
            caller=caller, request=request, request_id=request_id, started_at=started, result=slim,
            cost_usd=cost, cost_exact=exact, idempotency_key=idem_key,
        )  # fmt: skip

    def _observe_attempts(self, attempts: tuple[AttemptRecord, ...]) -> None:
        for attempt in attempts:
            self.metrics.observe_attempt(
                deployment=attempt.deployment, outcome=attempt.outcome, duration_s=attempt.latency_s
            )
            self.metrics.observe_quota_wait(deployment=attempt.deployment, wait_s=attempt.queued_s)

    async def _run(
        self, call: ParsedCall, caller: Caller, request_id: str, origin: str, idem_key: str | None
    ) -> tuple[Response, tuple[BlobRef, ...], Callable[..., Awaitable[None]]]:
        """The request run once; the response, the images stored for its URLs (if any) and its
        ledger/audit write, which the response runs once it is sent (``_recorded``), or whoever
        does not send it."""
        request = call.request
        hold, started, estimate = await self._guarded(caller, call)
        try:
            result = await self._call_backend(call, request_id)
        except BaseException as exc:
            await self._failed(exc, caller, request, request_id, hold, started, estimate, idem_key)
            raise
        record = await self._succeeded(result, caller, request, request_id, hold, started, estimate, idem_key)
        try:
            stored: tuple[BlobRef, ...] = ()
            urls = None
            if call.response_format == "url":
                stored = await self._store(result)
                urls = [self._url(ref, origin) for ref in stored]
            body = encode_images(result, urls=urls, echo=_echo(request, result))
            headers = result_headers(result)
        except BaseException as exc:  # made and billed, but not delivered: recorded as such
            with anyio.CancelScope(shield=True):
                await record(**_not_delivered(exc))
            raise
        return (
            SlicedResponse(
                body,
                media_type="application/json",
                headers=headers,
                background=BackgroundTask(self._recorded, record),
                undelivered=functools.partial(self._recorded, record, http_status=200, outcome=UNDELIVERED),
            ),
            stored,
            record,
        )

    async def _recorded(self, record: Callable[..., Awaitable[None]], **cut_off: Any) -> None:
        """The end of a request whose response was made: its ledger and audit rows once the body
        is sent (``cut_off``: as made and billed but not delivered, when the send was cut off),
        then it is no longer running."""
        try:
            await record(**cut_off)
        finally:
            self._end()

    async def _store(self, result: ImageResult) -> tuple[BlobRef, ...]:
        """Decode each image once and store it content-addressed, for ``response_format=url``."""
        assert self.blobs is not None
        refs = []
        for image in result.images:
            content_type = _FORMAT_TYPES.get(image.format or "png", "image/png")
            refs.append(await self.blobs.put(image.data, content_type))
        return tuple(refs)

    def _url(self, ref: BlobRef, origin: str) -> str:
        """A stored image's URL, signed to expire ``url_ttl_s`` from now."""
        assert self.blobs is not None
        url = self.blobs.signed_url(ref, self.governance.now(), ttl_s=self.url_ttl_s)
        return origin + url if url.startswith("/") else url

    # ------------------------------------------------------------------ streaming

    async def _stream(self, call: ParsedCall, caller: Caller, request_id: str) -> Response:
        request = call.request
        hold, started, estimate = await self._guarded(caller, call)
        items = self.backend.stream(request, request_id=request_id, options=call.options)
        try:
            first = await anext(items)  # failures before the first event keep their HTTP status
        except BaseException as exc:
            await self._failed(exc, caller, request, request_id, hold, started, estimate, None)
            raise
        prefix = event_prefix(request.operation)
        echo = _echo(request, None)

        async def frames() -> AsyncIterator[bytes]:
            item: PartialImage | ImageResult | None = first
            record: Callable[[], Awaitable[None]] | None = None
            settled = False
            try:
                while item is not None:
                    if isinstance(item, PartialImage):
                        payload = {
                            "b64_json": item.image.b64_json,
                            "partial_image_index": item.index,
                            "created_at": int(self.clock()),
                            **echo,
                        }
                        yield encode_event(f"{prefix}.partial_image", payload)
                    else:
                        settled = True
                        record = await self._succeeded(
                            item, caller, request, request_id, hold, started, estimate, None
                        )
                        made = _echo(request, item)  # what was made, not what was asked for
                        for image in item.images:
                            payload = {"b64_json": image.b64_json, "created_at": int(self.clock()), **made}
                            if item.usage is not None:
                                payload["usage"] = usage_payload(item.usage)
                            yield encode_event(f"{prefix}.completed", payload)
                    item = await anext(items, None)
            except ImageGateError as exc:
                settled = True
                await self._failed(
                    exc, caller, request, request_id, hold, started, estimate, None, streaming=True
                )
                yield error_event(bytes(render_error(exc, request_id=request_id).body))
            except Exception as exc:
                settled = True
                await self._failed(
                    exc, caller, request, request_id, hold, started, estimate, None, streaming=True
                )
                yield error_event(bytes(internal_error_response(request_id).body))
                raise
            except BaseException as exc:  # cancelled or closed: the client went away mid-stream
                settled = True
                await self._failed(
                    exc, caller, request, request_id, hold, started, estimate, None, streaming=True
                )
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    if not settled:  # closed at a frame (aclose): the same as a hang-up
                        await self._failed(
                            GeneratorExit(), caller, request, request_id, hold, started, estimate, None,
                            streaming=True,
                        )  # fmt: skip
                    if record is not None:
                        await record()

        return ClosingStreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers=dict(SSE_HEADERS),
            on_end=self._end,
        )


def _may_have_billed(exc: BaseException) -> bool:
    """Whether a failed request may have been billed upstream: one of its attempts was sent and
    its outcome is unknown (a read timeout, a malformed 2xx body), as the attempt loop marks them;
    a 5xx, a 429 or an attempt never sent is not billed. Without attempt records, any failure
    after sending (``UpstreamFailed``) may have been."""
    attempts = getattr(exc, "attempts", ())
    if attempts:
        return any(attempt.may_be_billed for attempt in attempts)
    return isinstance(exc, UpstreamFailed)


def _not_delivered(exc: BaseException) -> dict[str, Any]:
    """How a request whose images were made (and billed) is recorded when ``exc`` kept its answer
    from going out: with the status its client got instead."""
    if isinstance(exc, ImageGateError):
        return {"http_status": exc.http_status, "outcome": Outcome("error", exc.code)}
    if isinstance(exc, Exception):
        return {"http_status": 500, "outcome": Outcome("error", "internal_error")}
    return {"http_status": ShuttingDown.http_status, "outcome": UNDELIVERED}  # cancelled: a shutdown


def _without_images(request: ImageRequest) -> ImageRequest:
    """The request as the ledger and audit log need it: an edit without its uploaded bytes."""
    if isinstance(request, EditRequest):
        return replace(request, images=(), mask=None)
    return request


_ECHOED = ("size", "quality", "background", "output_format")


def _echo(request: ImageRequest, result: ImageResult | None) -> dict[str, Any]:
    """OpenAI's top-level ``size``/``quality``/``background``/``output_format``, for the fields
    the request gave. They describe the images made: with a ``result``, a value translation,
    a fallback or a degradation changed is the value used (a dropped one is left out), and
    ``size: auto`` is the first image's real size."""
    out: dict[str, Any] = {}
    for name in _ECHOED:
        value = getattr(request, name)
        if value is not None:
            out[name] = value
    if result is None:
        return out
    for change in result.changes:  # in the order they were made: the last one is what was used
        if change.field in out:
            if change.new is None:
                del out[change.field]
            else:
                out[change.field] = change.new
    first = result.images[0] if result.images else None
    if out.get("size") == "auto" and first is not None and first.width and first.height:
        out["size"] = f"{first.width}x{first.height}"
    return out

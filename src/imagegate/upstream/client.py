"""The attempt loop: the only place an upstream call is retried, failed over or timed out.

``UpstreamClient.send(plan, request)`` walks a ranked plan of deployments (routing hands it
several; today the pipeline passes the deployments serving the model). For each attempt it builds
the wire request (``azure.wire_request``), sends it on the one shared ``httpx.AsyncClient``,
classifies the outcome (``azure.classify``), asks the pure ``policy.retry.decide`` what to do, and
sleeps through the injected ``sleep``. Failing over to the next deployment counts as an attempt.
Every attempt is recorded (``AttemptRecord``) on the result, or on the error when it gives up;
a caller whose request may be cancelled, when neither exists, collects them (``AttemptsSeen``).

Time comes from the injected ``clock`` (monotonic seconds) and randomness from ``rand`` so tests
run with a fake clock and no real sleeping. One log line per attempt: deployment, status,
outcome and latency, never the prompt, the payload or a key; INFO for a failed attempt, DEBUG for
a success (the access line of the request names the deployment and the number of attempts).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Protocol

import anyio
import httpx

from imagegate.catalog import Catalog
from imagegate.config import DeploymentConfig, RetryConfig
from imagegate.errors import (
    ClientError,
    DeadlineExceeded,
    ImageGateError,
    NoDeploymentAvailable,
    UpstreamFailed,
    UpstreamStatusError,
)
from imagegate.policy.retry import GiveUp, decide, retry_after_of
from imagegate.types import AttemptRecord, GeneratedImage, ImageRequest, ImageResult, PartialImage, Usage
from imagegate.upstream.auth import AuthProvider, auth_for
from imagegate.upstream.azure import (
    Payload,
    SSEDecoder,
    SSEEvent,
    WireRequest,
    classify,
    classify_stream_error,
    parse_usage,
    plain_headers,
    request_id_of,
    wire_request,
)

__all__ = ["AttemptHooks", "AttemptsSeen", "OnPartial", "ProbeResult", "UpstreamClient"]

log = logging.getLogger("imagegate.upstream")

OnPartial = Callable[[PartialImage], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]
_MAX_URLS = 4096


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What ``probe`` learnt about a deployment without generating anything."""

    deployment: str
    ok: bool
    status_code: int | None
    detail: str
    latency_s: float


# The records of the attempts made for the requests run in this context, each as it ends (a
# cancelled one too). Tasks a request starts share the list: a context is copied, the list is not.
_SEEN: ContextVar[list[AttemptRecord] | None] = ContextVar("imagegate_attempts_seen", default=None)


class AttemptsSeen:
    """``with AttemptsSeen() as seen:`` a list that receives the record of every attempt made
    inside: what a request had tried when it was cancelled, for then neither a result nor an
    error carries them. (A class, not ``contextmanager``: it wraps every gateway request.)"""

    __slots__ = ("_token",)

    def __enter__(self) -> list[AttemptRecord]:
        seen: list[AttemptRecord] = []
        self._token = _SEEN.set(seen)
        return seen

    def __exit__(self, *exc: object) -> None:
        _SEEN.reset(self._token)


class AttemptHooks(Protocol):
    """A per-request seam for routing: ``choose`` picks the deployment for an attempt (it may wait
    for capacity, or raise ``RateLimited``/``NoDeploymentAvailable``); ``finished`` hears every
    attempt's record, including ``outcome="cancelled"`` when the caller went away mid-attempt.
    ``suggested`` is the loop's own index into ``plan`` (it moves on after a fail-over)."""

    async def choose(self, plan: Sequence[DeploymentConfig], suggested: int) -> DeploymentConfig: ...

    async def finished(self, dep: DeploymentConfig, record: AttemptRecord) -> None: ...


@dataclass
class _Seen:
    """What one attempt saw, for its record: how long routing held it back before it was sent,
    and what the wire showed (status, quota left, request id)."""

    queued_s: float = 0.0
    status: int | None = None
    remaining: int | None = None
    request_id: str | None = None

    def saw(self, response: httpx.Response) -> None:
        self.status = response.status_code
        headers = plain_headers(response)
        self.request_id = request_id_of(headers)
        self.remaining = _header_int(headers.get("x-ratelimit-remaining-requests", ""))


def _header_int(raw: str) -> int | None:
    """A header's integer, or None for anything else: ASCII only (``str.isdigit`` is also true
    for ``"²"``, which ``int`` refuses: a crash after the request was sent)."""
    if not raw.isascii():
        return None
    try:
        return int(raw)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Completed:
    image: GeneratedImage
    usage: Usage | None


class _Streamed(Exception):
    """Raised inside an attempt when a stream failed after partial images were delivered."""

    def __init__(self, error: ImageGateError) -> None:
        self.error = error


def _may_be_billed(error: ImageGateError | None) -> bool:
    if error is None:
        return True
    if isinstance(error, UpstreamStatusError):
        return error.status_code < 400  # a malformed 2xx body: the work was done
    return isinstance(error, UpstreamFailed)


class UpstreamClient:
    """Sends image requests to deployments with retries, fail-over, timeouts and a deadline."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        catalog: Catalog,
        retry: RetryConfig,
        auth: Mapping[str, AuthProvider] | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._http = http
        self._catalog = catalog
        self._retry = retry
        self._auth: dict[str, AuthProvider] = dict(auth or {})
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}

    def _auth_for(self, dep: DeploymentConfig) -> AuthProvider:
        if dep.name not in self._auth:
            self._auth[dep.name] = auth_for(dep)
        return self._auth[dep.name]

    def _timeout(self, dep: DeploymentConfig, req: ImageRequest, remaining_s: float) -> httpx.Timeout:
        spec = self._catalog.get(dep.model)
        read = dep.timeouts.read_s or spec.read_timeout_for(req.quality or spec.default_quality)
        read = max(0.001, min(read, remaining_s))
        return httpx.Timeout(
            connect=dep.timeouts.connect_s, read=read, write=dep.timeouts.write_s, pool=dep.timeouts.pool_s
        )

    def _url_for(self, wire: WireRequest) -> httpx.URL:
        """The parsed URL with its query, made once per deployment and operation (httpx parses a
        URL string, then again to merge ``params``, on every request: ~8 % of the request path)."""
        key = (wire.url, tuple(wire.params.items()))
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _MAX_URLS:  # deployments are configured: this is a safety net
                self._urls.clear()
            url = self._urls[key] = httpx.URL(wire.url, params=wire.params)
        return url

    async def _build(self, dep: DeploymentConfig, wire: WireRequest, limits: httpx.Timeout) -> httpx.Request:
        headers = {**wire.headers, **(await self._auth_for(dep).headers())}
        return self._http.build_request(
            "POST",
            self._url_for(wire),
            headers=headers,
            content=wire.content,
            data=wire.data,
            files=wire.files,
            timeout=limits,
        )

    # ------------------------------------------------------------------------------------------
    # one attempt

    async def _attempt(
        self,
        dep: DeploymentConfig,
        req: ImageRequest,
        remaining_s: float,
        on_partial: OnPartial | None,
        seen: _Seen,
    ) -> tuple[Payload, int]:
        spec = self._catalog.get(dep.model)
        wire = wire_request(dep, req, spec, stream=on_partial is not None)
        request = await self._build(dep, wire, self._timeout(dep, req, remaining_s))
        if on_partial is not None:
            return await self._attempt_stream(dep, request, on_partial, seen)
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise classify(dep.name, exc) from None
        seen.saw(response)
        outcome = classify(dep.name, response)
        if isinstance(outcome, ImageGateError):
            raise outcome
        return outcome, response.status_code

    async def _attempt_stream(
        self, dep: DeploymentConfig, request: httpx.Request, on_partial: OnPartial, seen: _Seen
    ) -> tuple[Payload, int]:
        delivered = 0
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise classify(dep.name, exc) from None
        seen.saw(response)
        try:
            if not 200 <= response.status_code < 300 or "event-stream" not in response.headers.get(
                "content-type", ""
            ):
                await response.aread()
                outcome = classify(dep.name, response)
                if isinstance(outcome, ImageGateError):
                    raise outcome
                return outcome, response.status_code
            images: list[GeneratedImage] = []
            usage: Usage | None = None
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is None:
                    continue
                done = self._on_event(dep, event)
                if isinstance(done, PartialImage):
                    delivered += 1
                    await on_partial(done)
                elif isinstance(done, _Completed):
                    images.append(done.image)
                    usage = done.usage if done.usage is not None else usage
            if not images:
                raise UpstreamFailed(f"deployment {dep.name}: the stream ended before the image was complete")
            payload = Payload(
                tuple(images),
                usage,
                None,
                request_id_of(response.headers),
                response.headers.get("x-ms-region"),
            )
            return payload, response.status_code
        except httpx.HTTPError as exc:
            error = classify(dep.name, exc)
            raise _Streamed(error) if delivered else error from None
        except ImageGateError as error:
            raise _Streamed(error) if delivered else error from None
        finally:
            await response.aclose()

    def _on_event(self, dep: DeploymentConfig, event: SSEEvent) -> PartialImage | _Completed | None:
        kind = event.event
        data = event.data
        if kind.endswith("partial_image") and isinstance(data.get("b64_json"), str):
            index = data.get("partial_image_index")
            return PartialImage(
                index=index if isinstance(index, int) else 0, image=GeneratedImage.from_b64(data["b64_json"])
            )
        if kind.endswith("completed") and isinstance(data.get("b64_json"), str):
            return _Completed(GeneratedImage.from_b64(data["b64_json"]), parse_usage(data.get("usage")))
        if kind == "error" or data.get("type") == "error":
            raise classify_stream_error(dep.name, data)
        return None

    # ------------------------------------------------------------------------------------------
    # the loop

    async def send(
        self,
        plan: Sequence[DeploymentConfig],
        req: ImageRequest,
        *,
        on_partial: OnPartial | None = None,
        hooks: AttemptHooks | None = None,
        deadline: float | None = None,
    ) -> ImageResult:
        """Run the attempt loop over ``plan`` (best first). With ``on_partial``, stream: partial
        images are awaited into it as they arrive; a failure after the first partial is not retried.
        ``hooks`` lets routing choose the deployment of each attempt and hear how it went.
        ``deadline`` (absolute, on this client's clock) shortens ``retry.deadline_s`` for this
        request; ``DeadlineExceeded`` when it has already passed (nothing is sent)."""
        if not plan:
            raise NoDeploymentAvailable("no deployment can serve this request")
        cfg = self._retry
        start = self._clock()
        if deadline is not None:
            left = deadline - start
            if left <= 0:
                raise DeadlineExceeded(
                    f"the request's deadline passed {-left:.1f} s ago; nothing was sent", remaining_s=left
                )
            cfg = replace(cfg, deadline_s=min(cfg.deadline_s, left))
        records: list[AttemptRecord] = []
        index = 0
        for number in range(1, cfg.max_attempts + 1):
            asked = self._clock()
            try:
                dep = plan[index] if hooks is None else await hooks.choose(plan, index)
            except ImageGateError as refused:  # routing found no capacity: keep what was tried
                refused.attempts = tuple(records)
                raise
            began, seen = self._clock(), _Seen(queued_s=self._clock() - asked)
            try:
                payload, _ = await self._attempt(dep, req, cfg.deadline_s - (began - start), on_partial, seen)
            except _Streamed as streamed:
                await self._finish(
                    hooks, dep, records, self._record(number, dep, streamed.error, began, seen)
                )
                streamed.error.attempts = tuple(records)
                raise streamed.error from None
            except ImageGateError as error:
                record = self._record(number, dep, error, began, seen)
                decision = decide(
                    cfg,
                    attempt=number,
                    error=error,
                    rand=self._rand(),
                    elapsed_s=self._clock() - start,
                    can_fail_over=index + 1 < len(plan),
                )
                if isinstance(decision, GiveUp) or number == cfg.max_attempts:
                    await self._finish(hooks, dep, records, record)
                    error.attempts = tuple(records)
                    log.info(
                        "upstream giving up after %d attempt(s): %s", number, getattr(decision, "reason", "")
                    )
                    raise error from None
                await self._finish(hooks, dep, records, replace(record, delay_s=decision.delay_s))
                index += 1 if decision.fail_over else 0
                if decision.delay_s > 0:
                    await self._sleep(decision.delay_s)
                continue
            except BaseException:  # cancelled mid-attempt: tell routing, then let it propagate
                cancelled = self._record(number, dep, None, began, seen, outcome="cancelled")
                with anyio.CancelScope(shield=True):
                    await self._finish(hooks, dep, records, cancelled)
                raise
            await self._finish(hooks, dep, records, self._record(number, dep, None, began, seen))
            return ImageResult(
                images=payload.images,
                model=dep.model,
                deployment=dep.name,
                region=payload.region or dep.region,
                usage=payload.usage,
                latency_s=self._clock() - start,
                request_id=payload.request_id,
                created=payload.created,
                attempts=tuple(records),
            )
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    @staticmethod
    async def _finish(
        hooks: AttemptHooks | None, dep: DeploymentConfig, records: list[AttemptRecord], record: AttemptRecord
    ) -> None:
        records.append(record)
        seen = _SEEN.get()
        if seen is not None:
            seen.append(record)
        if hooks is not None:
            await hooks.finished(dep, record)

    def _record(
        self,
        number: int,
        dep: DeploymentConfig,
        error: ImageGateError | None,
        began: float,
        seen: _Seen,
        *,
        outcome: str | None = None,
    ) -> AttemptRecord:
        """One attempt's record (``error=None``: it succeeded, or ``outcome`` says otherwise)."""
        latency = self._clock() - began
        status = seen.status
        if error is not None and status is None and isinstance(error, ClientError):
            status = error.http_status
        record = AttemptRecord(
            number=number,
            deployment=dep.name,
            outcome=outcome or (error.code if error is not None else "ok"),
            status_code=status,
            latency_s=latency,
            retry_after_s=retry_after_of(error) if error is not None else None,
            # cancelled mid-attempt: it may have been sent, so it may have been billed
            may_be_billed=_may_be_billed(error) if outcome is None else True,
            request_id=seen.request_id,
            remaining_requests=seen.remaining,
            queued_s=seen.queued_s,
        )
        # A success is on the request's access line (deployment, attempts); a failure is news.
        log.log(
            logging.DEBUG if record.outcome == "ok" else logging.INFO,
            "upstream attempt %d deployment=%s status=%s outcome=%s latency_s=%.3f",
            number,
            dep.name,
            record.status_code,
            record.outcome,
            latency,
        )
        return record

    # ------------------------------------------------------------------------------------------
    # doctor

    async def probe(self, dep: DeploymentConfig) -> ProbeResult:
        """Check that ``dep`` answers and accepts our credentials without generating anything.

        Sends a generation that is invalid by design (an empty prompt): the service checks the key
        and the deployment before it looks at the body, so a 400 means "reachable, credentials
        accepted, deployment exists" and no image is made, so nothing is billed. 401/403 mean the
        credentials are refused; 404 that the deployment does not exist.
        """
        began = self._clock()
        spec = self._catalog.get(dep.model)
        wire = wire_request(dep, ImageRequest(prompt="", size="0x0"), spec)
        try:
            request = await self._build(dep, wire, httpx.Timeout(dep.timeouts.connect_s, read=30.0))
            response = await self._http.send(request)
        except (httpx.HTTPError, ImageGateError) as exc:
            error = classify(dep.name, exc)
            return ProbeResult(dep.name, False, None, error.message, self._clock() - began)
        latency = self._clock() - began
        status = response.status_code
        if status in (400, 422):
            return ProbeResult(
                dep.name, True, status, "credentials accepted; probe refused as intended", latency
            )
        outcome = classify(dep.name, response)
        detail = (
            outcome.message
            if isinstance(outcome, ImageGateError)
            else "unexpected success: the probe was accepted"
        )
        return ProbeResult(dep.name, False, status, detail, latency)

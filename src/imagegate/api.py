"""The in-process library face: ``AsyncImageGate`` and its thin sync twin ``ImageGate``.

```python
async with AsyncImageGate.from_config("imagegate.yaml") as gate:   # or .from_env(), or ()
    result = await gate.generate("a red fox in the snow", size="1024x1024", quality="high")
    result.save("fox.png")
    print(result.cost.usd, result.deployment, result.attempts)
```

This is a composition root: it loads configuration once, builds the one shared
``httpx.AsyncClient`` (on ``upstream.transport``'s HTTP/1.1 connections; or takes yours), the
upstream client and the pipeline, and runs requests through it. With no configuration file and
no Azure credentials in the environment it uses the built-in emulator in-process
(``httpx.ASGITransport``, no sockets) and logs that once.

``ImageGate`` runs an ``AsyncImageGate`` on its own event loop in a background thread (an
``anyio.from_thread`` blocking portal): each method call is handed to that loop and waited for,
so it works from plain scripts and from threads, but not from inside a running event loop (use
``AsyncImageGate`` there).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import anyio
import anyio.from_thread
import httpx

from imagegate import config_load
from imagegate.catalog import Catalog, ModelSpec, default_catalog
from imagegate.config import ImageGateConfig
from imagegate.errors import InvalidRequest
from imagegate.pipeline.build import PipelineDeps, build_pipeline
from imagegate.pipeline.context import RequestContext
from imagegate.policy.fallback import parse_mode
from imagegate.policy.pricing import estimate
from imagegate.routing import DeploymentView, Scheduler
from imagegate.routing.redis_state import RedisStateStore
from imagegate.types import Cost, EditRequest, ImageRequest, ImageResult, InputImage, PartialImage
from imagegate.upstream.auth import CredentialFactory, auth_for, default_credential
from imagegate.upstream.client import ProbeResult, UpstreamClient
from imagegate.upstream.transport import pooled_client

__all__ = ["AsyncImageGate", "ImageGate", "ImageInput"]

log = logging.getLogger("imagegate")

ImageInput = str | os.PathLike[str] | bytes | IO[bytes]
EMULATOR_NOTICE = (
    "imagegate: no configuration and no Azure credentials found; "
    "using the built-in emulator (in-process, nothing is billed)"
)
_T = TypeVar("_T")


def _content_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _load_image(source: ImageInput, default_name: str, field: str) -> InputImage:
    """Read a path, bytes or a binary file object into an ``InputImage`` (no decoding here)."""
    if isinstance(source, bytes | bytearray):
        data, name = bytes(source), default_name
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidRequest.for_field(
                field, str(path), f"a readable image file ({exc.strerror})"
            ) from None
        name = path.name
    elif hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, bytes):
            raise InvalidRequest.for_field(field, type(source).__name__, "a file opened in binary mode")
        name = Path(str(getattr(source, "name", default_name))).name
    else:
        raise InvalidRequest.for_field(field, type(source).__name__, "a path, bytes or a binary file object")
    return InputImage(data=data, filename=name, content_type=_content_type(data))


def _as_list(images: ImageInput | Sequence[ImageInput]) -> Sequence[ImageInput]:
    if isinstance(images, str | bytes | bytearray | os.PathLike) or hasattr(images, "read"):
        return [images]  # type: ignore[list-item]
    return images


def _emulator_client(config: ImageGateConfig) -> httpx.AsyncClient:
    from imagegate.emulator import create_emulator_app

    app = create_emulator_app(time_scale=config.emulator_time_scale)
    endpoint = config.deployments[0].endpoint if config.deployments else "http://emulator"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=endpoint)


class AsyncImageGate:
    """Generate and edit images through configured deployments, with validation, retries,
    fail-over and cost. Use ``async with`` (or call ``aclose()``)."""

    def __init__(
        self,
        config: ImageGateConfig | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        catalog: Catalog | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] = random.random,
        credential_factory: CredentialFactory = default_credential,
    ) -> None:
        self.config = config if config is not None else config_load.load(None, dict(os.environ))
        self.catalog = catalog or default_catalog()
        for warning in self.config.warnings:
            log.warning("imagegate: %s", warning)
        if self.config.emulated and http_client is None:
            log.warning(EMULATOR_NOTICE)
        shared = self.config.routing_state
        # Shared state holds absolute times that other replicas compare with theirs: wall clock
        # there (routing.redis_state), monotonic (immune to clock steps) in a single process.
        clock = clock or (time.time if shared.backend == "redis" else time.monotonic)
        self._state_store: RedisStateStore | None = None
        if shared.backend == "redis" and shared.url is not None:
            self._state_store = RedisStateStore.from_url(shared.url, prefix=shared.prefix, ttl_s=shared.ttl_s)
        self._owns_http = http_client is None
        self._http = http_client or (
            _emulator_client(self.config) if self.config.emulated else pooled_client()
        )
        auth = {d.name: auth_for(d, credential_factory=credential_factory) for d in self.config.deployments}
        self.upstream = UpstreamClient(
            self._http,
            catalog=self.catalog,
            retry=self.config.retry,
            auth=auth,
            sleep=sleep,
            clock=clock,
            rand=rand,
        )
        self._clock = clock
        self.scheduler = Scheduler.from_config(
            self.config, clock=clock, sleep=sleep, rand=rand, store=self._state_store
        )
        self._pipeline = build_pipeline(
            PipelineDeps(self.config, self.catalog, self.upstream, scheduler=self.scheduler, clock=clock)
        )

    # construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Self:
        """Load a YAML configuration file (secrets may come from the environment)."""
        env = dict(os.environ) if environ is None else environ
        return cls(config_load.load(Path(path), env), **kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Self:
        """One deployment from AZURE_OPENAI_ENDPOINT / _API_KEY / _API_VERSION / _DEPLOYMENT (or
        IMAGEGATE_DEPLOYMENT); the built-in emulator when they are absent."""
        return cls(config_load.load(None, dict(os.environ) if environ is None else environ), **kwargs)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        if self._state_store is not None:
            await self._state_store.aclose()

    # requests --------------------------------------------------------------------------------

    async def _run(
        self,
        req: ImageRequest,
        translate: bool | None,
        on_partial: Any = None,
        *,
        fallback: str | None = None,
        deadline_s: float | None = None,
        degrade: bool = False,
        fallback_models: Collection[str] | None = None,
    ) -> ImageResult:
        mode = parse_mode(fallback)
        if deadline_s is not None and (
            isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float) or not deadline_s > 0
        ):
            raise InvalidRequest.for_field("deadline_s", deadline_s, "a number of seconds > 0")
        ctx = RequestContext(
            request=req,
            translate=self.config.translate if translate is None else translate,
            on_partial=on_partial,
            fallback=mode,
            fallback_models=None if fallback_models is None else frozenset(fallback_models),
            deadline=None if deadline_s is None else self._clock() + float(deadline_s),
            degrade=bool(degrade),
        )
        return await self._pipeline(ctx)

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        n: int = 1,
        size: str | None = None,
        quality: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        background: str | None = None,
        moderation: str | None = None,
        style: str | None = None,
        response_format: str | None = None,
        user: str | None = None,
        translate: bool | None = None,
        fallback: str | None = None,
        deadline_s: float | None = None,
        degrade: bool = False,
        fallback_models: Collection[str] | None = None,
    ) -> ImageResult:
        """Generate ``n`` images. ``model`` is a logical model (``default``, ``cheap``...), a
        deployment name or a catalog model; ``None`` is the configured default. Parameters left
        ``None`` use the model's defaults. ``translate=True`` maps parameters meant for another
        model (DALL·E 3's ``hd``, ``1792x1024``, ``style``) to the nearest equivalents and lists
        the changes on ``result.changes``.

        ``fallback``: ``"any"`` (default: the configured fallback chain, with parameters
        translated per model and ``n`` split for models that make fewer images per call),
        ``"same-model"`` (other deployments of the same model only) or ``"none"``.
        ``deadline_s`` bounds the whole request (default: ``retry.deadline_s``); when the time
        left is too short for the quality, ``degrade=True`` allows a lower quality (listed on
        ``result.changes``, ``result.degraded``), else ``DeadlineExceeded`` is raised at once.
        ``fallback_models`` limits the fallbacks to those reached by one of these names (a group,
        deployment or catalog model): what the HTTP gateway passes for a key limited to models."""
        req = ImageRequest(
            prompt=prompt,
            model=model,
            n=n,
            size=size,
            quality=quality,
            output_format=output_format,
            output_compression=output_compression,
            background=background,
            moderation=moderation,
            style=style,
            response_format=response_format,
            user=user,
        )
        return await self._run(
            req,
            translate,
            fallback=fallback,
            deadline_s=deadline_s,
            degrade=degrade,
            fallback_models=fallback_models,
        )

    def _edit_request(
        self, images: ImageInput | Sequence[ImageInput], prompt: str, mask: ImageInput | None, **params: Any
    ) -> EditRequest:
        listed = _as_list(images)
        loaded = tuple(_load_image(img, f"image-{i}.png", f"image[{i}]") for i, img in enumerate(listed))
        mask_image = _load_image(mask, "mask.png", "mask") if mask is not None else None
        return EditRequest(prompt=prompt, images=loaded, mask=mask_image, **params)

    async def edit(
        self,
        images: ImageInput | Sequence[ImageInput],
        prompt: str,
        *,
        mask: ImageInput | None = None,
        model: str | None = None,
        n: int = 1,
        size: str | None = None,
        quality: str | None = None,
        input_fidelity: str | None = None,
        output_format: str | None = None,
        output_compression: int | None = None,
        background: str | None = None,
        user: str | None = None,
        translate: bool | None = None,
        fallback: str | None = None,
        deadline_s: float | None = None,
        degrade: bool = False,
        fallback_models: Collection[str] | None = None,
    ) -> ImageResult:
        """Edit one or more images (paths, bytes or binary files). With ``mask`` (a PNG with
        alpha, the size of the first image), only its transparent pixels change. Images are
        checked before sending: a non-image, a truncated file, an oversized file or a bad mask
        raises ``InvalidRequest`` and nothing is sent. ``fallback``, ``deadline_s`` and
        ``degrade`` as for ``generate`` (models without edits are skipped in the chain)."""
        req = self._edit_request(
            images,
            prompt,
            mask,
            model=model,
            n=n,
            size=size,
            quality=quality,
            input_fidelity=input_fidelity,
            output_format=output_format,
            output_compression=output_compression,
            background=background,
            user=user,
        )
        return await self._run(
            req,
            translate,
            fallback=fallback,
            deadline_s=deadline_s,
            degrade=degrade,
            fallback_models=fallback_models,
        )

    async def stream(
        self,
        prompt: str,
        *,
        partial_images: int = 2,
        images: ImageInput | Sequence[ImageInput] | None = None,
        mask: ImageInput | None = None,
        translate: bool | None = None,
        fallback: str | None = None,
        deadline_s: float | None = None,
        degrade: bool = False,
        fallback_models: Collection[str] | None = None,
        **params: Any,
    ) -> AsyncIterator[PartialImage | ImageResult]:
        """Yield partial images as they arrive, then the final ``ImageResult``. Pass ``images``
        to stream an edit. Consume it to the end (or close it) so the request finishes.
        ``fallback``, ``deadline_s`` and ``degrade`` as for ``generate`` (a fallback model that
        does not stream is skipped)."""
        if images is not None:
            req: ImageRequest = self._edit_request(
                images, prompt, mask, partial_images=partial_images, **params
            )
        else:
            req = ImageRequest(prompt=prompt, partial_images=partial_images, **params)
        send, receive = anyio.create_memory_object_stream[PartialImage | ImageResult](math.inf)

        failure: list[Exception] = []

        async def run() -> None:
            async with send:
                try:
                    result = await self._run(
                        req,
                        translate,
                        on_partial=send.send,
                        fallback=fallback,
                        deadline_s=deadline_s,
                        degrade=degrade,
                        fallback_models=fallback_models,
                    )
                    await send.send(result)
                except Exception as exc:  # re-raised below, outside the task group (no ExceptionGroup)
                    failure.append(exc)

        async with anyio.create_task_group() as tg, receive:
            tg.start_soon(run)
            async for item in receive:
                yield item
        if failure:
            raise failure[0]

    # planning and checks ---------------------------------------------------------------------

    def spec_for(self, model: str | None) -> ModelSpec:
        """The catalog model that ``model`` (a group, deployment or model name) resolves to."""
        if model is not None and model in self.catalog:
            return self.catalog.get(model)
        return self.catalog.get(self.config.deployments_for(model)[0].model)

    def estimate(
        self,
        *,
        model: str | None = None,
        size: str | None = None,
        quality: str | None = None,
        n: int = 1,
        prompt: str | None = None,
    ) -> Cost:
        """What a request would cost, before spending (marked ``estimated``)."""
        return estimate(self.spec_for(model), size=size, quality=quality, n=n, prompt=prompt)

    async def status(self) -> tuple[DeploymentView, ...]:
        """What routing knows about every deployment now, without sending anything: breaker
        state (and until when it stays open), quota headroom (effective vs configured RPM, our
        grants in the current window, the last ``x-ratelimit-remaining-requests``), requests in
        flight and the learnt latency per quality. ``imagegate doctor`` prints it."""
        return await self.scheduler.snapshot()

    async def doctor(self) -> list[ProbeResult]:
        """Probe every deployment without generating (see ``UpstreamClient.probe``)."""
        results: list[ProbeResult] = []
        for dep in self.config.deployments:
            results.append(await self.upstream.probe(dep))
        return results


class ImageGate(AbstractContextManager["ImageGate"]):
    """Synchronous face: an ``AsyncImageGate`` on its own event loop in a background thread."""

    def __init__(self, config: ImageGateConfig | None = None, **kwargs: Any) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._gate: AsyncImageGate = self._portal.call(partial(self._make, config, kwargs))
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    @staticmethod
    async def _make(config: ImageGateConfig | None, kwargs: dict[str, Any]) -> AsyncImageGate:
        return AsyncImageGate(config, **kwargs)

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> ImageGate:
        env = dict(os.environ) if environ is None else environ
        return cls(config_load.load(Path(path), env), **kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> ImageGate:
        return cls(config_load.load(None, dict(os.environ) if environ is None else environ), **kwargs)

    @property
    def config(self) -> ImageGateConfig:
        return self._gate.config

    def _call(self, fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        return self._portal.call(partial(fn, *args, **kwargs))

    def generate(self, prompt: str, **kwargs: Any) -> ImageResult:
        """Same parameters as ``AsyncImageGate.generate``."""
        return self._call(self._gate.generate, prompt, **kwargs)

    def edit(self, images: ImageInput | Sequence[ImageInput], prompt: str, **kwargs: Any) -> ImageResult:
        """Same parameters as ``AsyncImageGate.edit``."""
        return self._call(self._gate.edit, images, prompt, **kwargs)

    def stream(self, prompt: str, **kwargs: Any) -> Iterator[PartialImage | ImageResult]:
        """Same as ``AsyncImageGate.stream``: partial images as they arrive, then the result.
        The async stream runs on the gate's loop and hands items over through a queue."""
        items: queue.Queue[object] = queue.Queue()
        end = object()

        async def pump() -> None:
            try:
                async for item in self._gate.stream(prompt, **kwargs):
                    items.put(item)
            except Exception as exc:
                items.put(exc)
            finally:
                items.put(end)

        future = self._portal.start_task_soon(pump)
        while (item := items.get()) is not end:
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]
        future.result()

    def estimate(self, **kwargs: Any) -> Cost:
        return self._gate.estimate(**kwargs)

    def doctor(self) -> list[ProbeResult]:
        return self._call(self._gate.doctor)

    def status(self) -> tuple[DeploymentView, ...]:
        """Same as ``AsyncImageGate.status``."""
        return self._call(self._gate.status)

    def close(self) -> None:
        try:
            self._portal.call(self._gate.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

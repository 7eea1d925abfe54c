"""The upstream HTTP transport: httpx's API on ``upstream.http11``'s connections.

Everything above this module speaks ``httpx`` (``httpx.AsyncClient`` is the seam: tests hand in
``MockTransport`` or ``ASGITransport``). ``Http11Transport`` is the transport the production
client uses for sockets: a pool of ``http11.Connection`` per origin (scheme, host, port), which
read a ``content-length`` body straight into one buffer of its size (why: ``http11``'s
docstring). httpcore + h11 spent ~10 ms of CPU per 2.2 MB body and aiohttp 3.4 ms, most of it
copying; this transport moves the same body with no copy on the way in.

Errors are mapped by what was on the wire, because that decides whether a request may be resent
(``azure.classify``; a resent image generation is a second bill):

=========================================================  ==========================  ========
what happened                                              httpx raised                sent?
=========================================================  ==========================  ========
DNS, refused, unreachable, TLS handshake or certificate    ``ConnectError``            no
connect took longer than ``connect``                       ``ConnectTimeout``          no
no free connection within ``pool``                         ``PoolTimeout``             no
upload stalled for ``write`` (the request is not whole)    ``WriteTimeout``            no
closed or reset during the upload                          ``WriteError``              no
nothing read for ``read`` while a response was due         ``ReadTimeout``             yes
closed or reset before a response head                     ``RemoteProtocolError``     maybe
malformed head, chunk size or length                       ``RemoteProtocolError``     yes
closed or reset mid-body                                   ``ReadError``               yes
=========================================================  ==========================  ========

Messages name the failure's class, never URLs or headers. ``max_connections`` bounds the
requests in flight; up to ``max_keepalive_connections`` idle connections are kept per origin for
``keepalive_expiry`` seconds. Pools are per event loop (``ImageGate`` runs its loop in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from httpx._exceptions import request_context  # what httpx's send wraps the transport in

from imagegate.upstream import http11

__all__ = ["DEFAULT_LIMITS", "Http11Transport", "UpstreamHTTPClient", "pooled_client"]

_Origin = tuple[str, str, int]

# Idle connections are retired after 4 s, before the 5 s idle timeout of uvicorn (which serves
# `imagegate emulator`) and of many servers like it: a connection reused just as its server
# closes it fails with the request already sent, which may have been billed, so it is not resent.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=4.0)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@contextlib.contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """Re-raise the wire's exceptions as the httpx ones ``upstream.azure.classify`` reads."""
    try:
        yield
    except http11.ReadTimedOut as exc:
        raise httpx.ReadTimeout("read timed out", request=request) from exc
    except http11.WriteTimedOut as exc:
        raise httpx.WriteTimeout("write timed out", request=request) from exc
    except http11.UploadCut as exc:
        raise httpx.WriteError("connection closed during the upload", request=request) from exc
    except http11.PeerClosed as exc:
        if exc.got_head:
            raise httpx.ReadError("connection closed mid-body", request=request) from exc
        raise httpx.RemoteProtocolError("server disconnected without a response", request=request) from exc
    except http11.ProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except OSError as exc:  # reset while writing or reading: after sending
        raise httpx.ReadError(f"connection failed: {type(exc).__name__}", request=request) from exc


class _Pool:
    """Idle connections per origin, and the bound on requests in flight, for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: httpx.Limits) -> None:
        self.loop = loop
        self.slots = asyncio.Semaphore(limits.max_connections or 2**31)
        self.keep = (
            limits.max_keepalive_connections if limits.max_keepalive_connections is not None else 2**31
        )
        self.expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self.idle: dict[_Origin, list[http11.Connection]] = {}
        self.closed = False  # a closed pool takes no connection back: it closes it

    def take_idle(self, origin: _Origin) -> http11.Connection | None:
        idle = self.idle.get(origin)
        now = self.loop.time()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            closing = conn.transport is None or conn.transport.is_closing()  # before connection_lost
            if not conn.closed and not closing and now - conn.idle_since < self.expiry:
                return conn
            conn.close()
        return None

    def put_idle(self, origin: _Origin, conn: http11.Connection) -> None:
        if self.closed:
            conn.close()
            return
        conn.park()
        idle = self.idle.setdefault(origin, [])
        now = self.loop.time()
        for old in [c for c in idle if c.closed or now - c.idle_since >= self.expiry]:
            idle.remove(old)
            old.close()
        if len(idle) >= self.keep:
            conn.close()
            return
        conn.idle_since = now
        idle.append(conn)

    def close(self) -> None:
        self.closed = True
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()

    def retire(self) -> None:
        """Close from another thread or loop: on its own loop if that still runs, else drop (a
        closed loop can run nothing; its sockets go with the garbage)."""
        self.closed = True
        if self.loop.is_closed():
            self.idle.clear()
            return
        with contextlib.suppress(RuntimeError):  # closed in the meantime
            self.loop.call_soon_threadsafe(self.close)


class _Body(httpx.AsyncByteStream):
    """A response body: read whole (``content-length``) or piece by piece, then the connection
    goes back to the pool, or is closed when it cannot carry another exchange."""

    def __init__(self, pool: _Pool, origin: _Origin, conn: http11.Connection, request: httpx.Request) -> None:
        self._pool, self._origin, self._conn, self._request = pool, origin, conn, request
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            if self._conn.whole_body:
                body = await self._conn.read_body()
                if body:
                    yield body if isinstance(body, bytes) else bytes(body)
            else:
                while (piece := await self._conn.read_piece()) is not None:
                    yield piece

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        if self._conn.reusable:
            self._pool.put_idle(self._origin, self._conn)
        else:  # abandoned half-way (the rest is still on the wire), or closed: never reused
            self._conn.discard()
        self._pool.slots.release()


class Http11Transport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over pooled ``http11.Connection``s."""

    def __init__(
        self, *, limits: httpx.Limits | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._limits = limits or DEFAULT_LIMITS
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._pool: _Pool | None = None

    def _pool_for_loop(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            if self._pool is not None:
                self._pool.retire()
            self._pool = _Pool(loop, self._limits)
        return self._pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        limits = request.extensions.get("timeout", {})
        data = _serialize(request, await request.aread())
        pool = self._pool_for_loop()
        try:
            async with asyncio.timeout(limits.get("pool")):
                await pool.slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection", request=request) from None
        conn: http11.Connection | None = None
        try:
            # no await between taking an idle connection and writing to it: one the server closed
            # while it was idle is seen as closed here and skipped, never written to
            conn = pool.take_idle(origin) or await self._connect(pool, origin, limits.get("connect"), request)
            with _mapped(request):
                await conn.send(
                    request.method.encode("ascii"), *data, limits.get("read"), limits.get("write")
                )
                head = await conn.read_head()
        except BaseException:  # cancelled too: a connection left mid-exchange is never reused
            if conn is not None:
                conn.abort()
            pool.slots.release()
            raise
        return httpx.Response(
            status_code=head.status,
            headers=head.headers,  # bytes as read: httpx keeps them, no decode and re-encode
            stream=_Body(pool, origin, conn, request),
            request=request,
            extensions={
                "http_version": b"HTTP/1.0" if head.http10 else b"HTTP/1.1",
                "reason_phrase": head.reason,
            },
        )

    async def _connect(
        self, pool: _Pool, origin: _Origin, limit_s: float | None, request: httpx.Request
    ) -> http11.Connection:
        scheme, host, port = origin
        tls = self._ssl if scheme == "https" else None
        try:
            async with asyncio.timeout(limit_s):
                _, conn = await pool.loop.create_connection(
                    lambda: http11.Connection(pool.loop, tls=tls is not None),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout("connect timed out", request=request) from None
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (ssl.SSLError)
            raise httpx.ConnectError(f"connect failed: {type(exc).__name__}", request=request) from None
        return conn

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._pool = None


def _serialize(request: httpx.Request, body: bytes) -> tuple[bytes, bytes]:
    """The request head and body to write (a body is not copied unless it must be chunked)."""
    headers = request.headers
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    for name, value in headers.raw:
        lines += (name, b": ", value, b"\r\n")
    if body and not chunked and "content-length" not in headers:
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    head = b"".join(lines)
    if chunked:  # the body was read whole: one chunk and the last one
        return head, (b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
    return head, body


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing it is handed."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


_MAX_MERGED = 256


class UpstreamHTTPClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that keeps no cookies. One client serves every tenant's
    requests, so a cookie an upstream sets (a load balancer's affinity cookie, say) must not be
    replayed on the next caller's request; and httpx wraps each response in ``http.cookiejar``
    objects to look for cookies, ~5 % of the gateway's request path.

    ``send`` hands the request straight to the transport when httpx's loop around it would do
    nothing: no client auth, no redirects followed, no event hooks, no per-call overrides (the
    upstream client's case: keys are headers, a redirect is an answer). That loop (auth flow
    generator, redirect loop, a stream wrapper per response, a log call) was ~2.5 % of the
    gateway's CPU per request. Anything else goes through httpx's own ``send``. The one
    difference: ``response.elapsed`` is set when the body has been read, not for a stream. Both
    shortcuts use httpx internals (``_transport_for_url``, ``request_context``, the ``_types``
    aliases) of the pinned httpx; ``tests/upstream/test_client_send.py`` compares the results
    with httpx's own and breaks first if a new httpx changes them."""

    def __init__(self, **kwargs: Any) -> None:
        self._merged_headers: dict[
            tuple[tuple[tuple[bytes, bytes], ...], tuple[tuple[str, str], ...]], httpx.Headers
        ] = {}
        super().__init__(**kwargs)

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: httpx._types.RequestContent | None = None,
        data: httpx._types.RequestData | None = None,
        files: httpx._types.RequestFiles | None = None,
        json: Any | None = None,
        params: httpx._types.QueryParamTypes | None = None,
        headers: httpx._types.HeaderTypes | None = None,
        cookies: httpx._types.CookieTypes | None = None,
        timeout: httpx._types.TimeoutTypes | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT,
        extensions: httpx._types.RequestExtensions | None = None,
    ) -> httpx.Request:
        """httpx's ``build_request``; for an absolute URL, a body of bytes and a dict of headers
        (every upstream call), without re-merging the same client headers into each request:
        the merged headers are kept per set of request headers (~1.5 % of a request)."""
        if (
            isinstance(url, httpx.URL)
            and url.is_absolute_url
            and isinstance(headers, dict)
            and (content is None or isinstance(content, bytes))
            and data is None
            and files is None
            and json is None
            and params is None
            and not self.params
            and cookies is None
            and extensions is None
        ):
            limits = (
                self.timeout
                if isinstance(timeout, httpx._client.UseClientDefault)
                else httpx.Timeout(timeout)
            )
            return httpx.Request(
                method,
                url,
                content=content,
                headers=self._merged(headers),
                extensions={"timeout": limits.as_dict()},
            )
        return super().build_request(
            method, url, content=content, data=data, files=files, json=json, params=params,
            headers=headers, cookies=cookies, timeout=timeout, extensions=extensions,
        )  # fmt: skip

    def _merged(self, headers: dict[str, str]) -> httpx.Headers:
        """The client's headers updated with ``headers``, as httpx merges them, made once per
        distinct pair (the client's headers are part of the key: they may be changed in place)."""
        key = (tuple(self.headers.raw), tuple(headers.items()))
        merged = self._merged_headers.get(key)
        if merged is None:
            if len(self._merged_headers) >= _MAX_MERGED:  # tokens rotate: old entries go
                self._merged_headers.clear()
            merged = self._merged_headers[key] = httpx.Headers(self.headers)
            merged.update(headers)
        return merged

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: httpx._types.AuthTypes | httpx._client.UseClientDefault | None = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: bool | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        hooks = self.event_hooks
        if (
            auth is not httpx.USE_CLIENT_DEFAULT
            or follow_redirects is not httpx.USE_CLIENT_DEFAULT
            or self.auth is not None
            or self.follow_redirects
            or hooks["request"]
            or hooks["response"]
            or self.is_closed
        ):
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        if "timeout" not in request.extensions:
            request.extensions = {**request.extensions, "timeout": self.timeout.as_dict()}
        started = time.perf_counter()
        with request_context(request=request):
            response = await self._transport_for_url(request.url).handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
            response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return None


_NO_COOKIES = _NoCookies()


def pooled_client(limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """The production upstream client: httpx's API, ``http11``'s wire code (see the docstring).
    Proxies from the environment keep working: httpx mounts its own transport for them.

    It asks for bodies uncompressed (``accept-encoding: identity``, where httpx asks for gzip):
    an image body is base64 of a PNG, which gzip shrinks only to ~76 %, and inflating one 2.2 MB
    body costs ~8 ms of CPU, about three times all the rest the gateway does for the request. In
    the same region the extra bytes on the wire cost far less than that."""
    limits = limits or DEFAULT_LIMITS
    return UpstreamHTTPClient(
        transport=Http11Transport(limits=limits), limits=limits, headers={"accept-encoding": "identity"}
    )

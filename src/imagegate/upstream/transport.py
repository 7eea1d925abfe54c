"""The upstream HTTP transport: httpx's API on aiohttp's wire code.

Everything above this module speaks ``httpx`` (``httpx.AsyncClient`` is the seam: tests hand in
``MockTransport`` or ``ASGITransport``). This is the transport the production client uses for
sockets. Why not httpx's own (httpcore + h11): an image response is 1-10 MB, and httpcore reads
it 64 KB at a time through h11's pure-Python event machinery and an anyio cancel scope per read;
measured on a 2.2 MB body that is ~10 ms of CPU per response against ~3 ms for aiohttp, whose
parser is C (llhttp) and whose protocol buffers the body without a Python call per chunk
(``bench/bench_gateway.py`` shows the difference end to end). Why not the ``httpx-aiohttp``
package: it maps ``aiohttp.ClientConnectionError`` (which includes a connection reset *after*
the request was sent) to ``httpx.ConnectTimeout``, i.e. "not sent, safe to resend", and a
resent image generation is a second bill. Here the mapping follows what was on the wire:

=====================================================  ==========================  ============
aiohttp raised                                         httpx raised                sent?
=====================================================  ==========================  ============
``ClientConnectorError`` (DNS, refused, TLS, certs)    ``ConnectError``            no
``ConnectionTimeoutError`` (pool wait or connect)      ``ConnectTimeout``          no
``SocketTimeoutError`` / other ``ServerTimeoutError``  ``ReadTimeout``             yes
``ClientPayloadError`` (body cut short, bad chunking)  ``ReadError``               yes
``ServerDisconnectedError``, ``ClientOSError``, ...    ``RemoteProtocolError``     maybe: yes
=====================================================  ==========================  ============

Bodies: an event stream (``text/event-stream``) is handed on chunk by chunk as it arrives; any
other body is read whole in one buffer (no list of chunks to join), which is what
``httpx.AsyncClient.send`` would build anyway. aiohttp has no write timeout (httpx's ``write``
is not applied); a stalled upload ends at the read timeout, as "sent".
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
from yarl import URL

__all__ = ["AiohttpTransport", "UpstreamHTTPClient", "pooled_client"]

_EVENT_STREAM = "text/event-stream"


@contextlib.contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    """Re-raise aiohttp's exceptions as the httpx exceptions ``upstream.azure.classify`` reads."""
    try:
        yield
    except aiohttp.ClientConnectorError as exc:  # before anything was sent
        raise httpx.ConnectError(_describe(exc), request=request) from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(_describe(exc), request=request) from exc
    except TimeoutError as exc:  # aiohttp.ServerTimeoutError (sock_read) is one
        raise httpx.ReadTimeout(_describe(exc), request=request) from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(_describe(exc), request=request) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(_describe(exc), request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:  # disconnected/reset: possibly after sending
        raise httpx.RemoteProtocolError(_describe(exc), request=request) from exc


def _describe(exc: BaseException) -> str:
    """The exception's class (never its text: aiohttp puts URLs and headers in some messages)."""
    return f"aiohttp {type(exc).__name__}"


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            if _EVENT_STREAM in self._response.headers.get("content-type", ""):
                async for chunk in self._response.content.iter_any():
                    yield chunk
            else:
                yield await self._response.read()

    async def aclose(self) -> None:
        # A body read to the end returns its connection to the pool; one abandoned half-way
        # cannot be reused (the rest of it is still on the wire), so it is closed.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over one ``aiohttp.ClientSession`` (made on first use, in
    the running loop: aiohttp binds a session to its loop)."""

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        read_bufsize: int = 1024 * 1024,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._max_connections = limits.max_connections or 0  # 0: unbounded in aiohttp
        self._keepalive_s = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._read_bufsize = read_bufsize
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_s,
                ssl=self._ssl,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes content-encoding itself
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps cookies, when it does
                read_bufsize=self._read_bufsize,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),  # httpx sets its own
            )
            self._session, self._loop = session, loop
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_for_loop()
        limits = request.extensions.get("timeout", {})
        connect, pool, read = limits.get("connect"), limits.get("pool"), limits.get("read")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        with _mapped(request):
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                compress=None,
            )
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(RuntimeError):  # made in a loop that is gone
                await self._session.close()
        self._session = self._loop = None


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing it is handed."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class UpstreamHTTPClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that keeps no cookies. One client serves every tenant's
    requests, so a cookie an upstream sets (a load balancer's affinity cookie, say) must not be
    replayed on the next caller's request; and httpx wraps each response in ``http.cookiejar``
    objects to look for cookies, ~5 % of the gateway's request path."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return None


_NO_COOKIES = _NoCookies()


def pooled_client(limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """The production upstream client: httpx's API, aiohttp's wire code (see the docstring).
    Proxies from the environment keep working: httpx mounts its own transport for them."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return UpstreamHTTPClient(transport=AiohttpTransport(limits=limits), limits=limits)

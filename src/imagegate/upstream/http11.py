"""HTTP/1.1 responses off the wire, read straight into the buffer the body ends up in.

This is the wire half of ``upstream.transport``: a response head parser, a chunked decoder and
one connection as an ``asyncio.BufferedProtocol``. Why by hand: an image response is a 1-10 MB
body with a ``content-length``, and every general client copies it several times on the way in.
aiohttp (the transport before this one): the event loop copies each 256 KB read into a new
``bytes``, its C parser copies each body slice into another, and ``read()`` joins them: three
copies of every image, 11.6 % of the gateway's CPU at 16 concurrent 2.2 MB responses (``perf``),
plus aiohttp's Python per chunk. httpcore + h11 is slower still (pure Python per 64 KB). Here a
``content-length`` body is allocated once, at its size, and the kernel writes into it
(``get_buffer`` hands the loop the unfilled rest of it): no copy, no chunk list, no Python per
read. Measured end to end (``bench/bench_gateway.py --pin``): see docs/gateway.md.

What is here is only what a client of Azure's image endpoints needs: one request at a time per
connection (no pipelining), bodies by ``content-length``, ``chunked`` or connection close, 1xx
heads skipped, no upgrades. Strict where it matters for safety (a malformed head or chunk size is
an error, never a guess: a misread length would splice two responses) and the limits are named
constants.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from imagegate.upstream.buffers import raw_bytes

__all__ = [
    "MAX_HEAD_BYTES",
    "ChunkedDecoder",
    "Connection",
    "Framing",
    "PeerClosed",
    "ProtocolError",
    "ReadTimedOut",
    "ResponseHead",
    "UploadCut",
    "WriteTimedOut",
    "framing_of",
    "parse_head",
]

MAX_HEAD_BYTES = 64 * 1024  # status line and headers (h11's default limit is 16 KiB)
MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions, or one trailer field
STREAM_READ_BYTES = 256 * 1024  # read size for chunked and close-delimited bodies
STREAM_HIGH_WATER = 4 * 1024 * 1024  # decoded stream bytes waiting for the reader: stop reading
STREAM_LOW_WATER = 1024 * 1024  # ... and start again below this
UPLOAD_PIECE = 256 * 1024  # a request body larger than this is written piece by piece
_EVENT_STREAM = b"text/event-stream"


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 framing (a malformed head, chunk size or length)."""


class PeerClosed(Exception):
    """The connection ended before the response did; ``got_head`` says how far it came."""

    def __init__(self, got_head: bool) -> None:
        super().__init__("closed mid-body" if got_head else "closed before a response")
        self.got_head = got_head


class UploadCut(Exception):
    """The connection ended while the request body was still being written: the server cannot
    have had the whole request."""


class ReadTimedOut(Exception):
    """Nothing arrived for the read timeout while a response was due."""


class WriteTimedOut(Exception):
    """The request could not be written within the write timeout."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]  # names lower-cased, values stripped
    http10: bool = False

    def get(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_head(block: bytes) -> ResponseHead:
    """A status line and header fields (``block`` without its final blank line)."""
    status_line, *fields = block.split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit() or code < b"100":
        raise ProtocolError("malformed status line")
    headers: list[tuple[bytes, bytes]] = []
    for line in fields:
        name, colon, value = line.partition(b":")
        if not colon or not name or not _TOKEN.issuperset(name):  # also refuses obs-fold lines
            raise ProtocolError("malformed header field")
        headers.append((name.lower(), value.strip(b" \t")))
    return ResponseHead(int(code), reason, headers, http10=version == b"HTTP/1.0")


class Framing(enum.Enum):
    NONE = "none"  # no body (HEAD, 1xx, 204, 304)
    LENGTH = "length"  # content-length bytes
    CHUNKED = "chunked"
    CLOSE = "close"  # until the server closes the connection


def framing_of(head: ResponseHead, method: bytes) -> tuple[Framing, int]:
    """How the body is delimited (RFC 9112 section 6.3), and its length when known."""
    if method == b"HEAD" or head.status < 200 or head.status in (204, 304):
        return Framing.NONE, 0
    codings = b",".join(head.get(b"transfer-encoding"))
    if codings:
        last = codings.rsplit(b",", 1)[-1].strip().lower()
        return (Framing.CHUNKED, 0) if last == b"chunked" else (Framing.CLOSE, 0)
    lengths = {v.strip() for value in head.get(b"content-length") for v in value.split(b",")}
    if not lengths:
        return Framing.CLOSE, 0
    if len(lengths) > 1:
        raise ProtocolError("conflicting content-length values")
    (length,) = lengths
    if not length.isdigit() or len(length) > 15:
        raise ProtocolError("malformed content-length")
    return Framing.LENGTH, int(length)


def reusable(head: ResponseHead) -> bool:
    """Whether the connection may carry another exchange after this response (RFC 9112 9.3). A
    response framed by both transfer-encoding and content-length, or an HTTP/1.0 one with a
    transfer-encoding, is read but its connection closed (section 6.1, 6.3)."""
    if head.get(b"transfer-encoding") and (head.http10 or head.get(b"content-length")):
        return False
    tokens = {t.strip().lower() for value in head.get(b"connection") for t in value.split(b",")}
    return b"keep-alive" in tokens if head.http10 else b"close" not in tokens


class _Chunk(enum.Enum):
    SIZE = 1
    DATA = 2
    DATA_END = 3  # the CRLF after a chunk's data
    TRAILER = 4
    DONE = 5


class ChunkedDecoder:
    """``Transfer-Encoding: chunked``, fed the bytes in any split; ``feed`` returns the data."""

    def __init__(self) -> None:
        self._state = _Chunk.SIZE
        self._line = bytearray()
        self._left = 0
        self._trailers = 0  # bytes of trailer fields so far (bounded like a head)

    @property
    def done(self) -> bool:
        return self._state is _Chunk.DONE

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """The data pieces in ``data`` and how many bytes of it were used (all of them, unless
        the body ended inside it)."""
        pieces: list[bytes] = []
        at, end = 0, len(data)
        while at < end and self._state is not _Chunk.DONE:
            if self._state is _Chunk.DATA:
                take = min(self._left, end - at)
                pieces.append(data[at : at + take])
                at += take
                self._left -= take
                if self._left == 0:
                    self._state = _Chunk.DATA_END
                continue
            newline = data.find(b"\n", at)
            stop = end if newline < 0 else newline + 1
            if len(self._line) + stop - at > MAX_CHUNK_LINE:
                raise ProtocolError("chunk-size line or trailer field too long")
            self._line += data[at:stop]
            at = stop
            if newline >= 0:
                self._line_done()
        return pieces, at

    def _line_done(self) -> None:
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(b"\r\n"):
            raise ProtocolError("chunk line not ended by CRLF")
        line = line[:-2]
        if self._state is _Chunk.DATA_END:
            if line:
                raise ProtocolError("chunk data longer than its size")
            self._state = _Chunk.SIZE
        elif self._state is _Chunk.SIZE:
            size = line.split(b";", 1)[0].strip(b" \t")
            if not size or len(size) > 15 or not all(c in b"0123456789abcdefABCDEF" for c in size):
                raise ProtocolError("malformed chunk size")
            self._left = int(size, 16)
            self._state = _Chunk.DATA if self._left else _Chunk.TRAILER
        elif not line:  # _Chunk.TRAILER: fields are read and dropped; a blank line ends them
            self._state = _Chunk.DONE
        else:
            self._trailers += len(line) + 2
            if self._trailers > MAX_HEAD_BYTES:
                raise ProtocolError(f"trailer fields larger than {MAX_HEAD_BYTES} bytes")


class _State(enum.Enum):
    IDLE = 1
    HEAD = 2
    BODY = 3  # content-length: the kernel writes into ``body``
    STREAM = 4  # chunked or close-delimited: decoded pieces queue in ``pieces``
    DONE = 5


class Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection, one exchange at a time: ``send``, ``read_head``, then either
    ``read_body`` (content-length) or ``read_piece`` until it returns ``None``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, tls: bool = False) -> None:
        self._loop = loop
        self._tls = tls
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._state = _State.IDLE
        self._head = bytearray(MAX_HEAD_BYTES)
        self._head_len = 0
        self._scratch: bytearray | None = None
        self._method = b""
        self.head: ResponseHead | None = None
        self._keep = False
        self._body: bytes | bytearray = b""
        self._view: memoryview | None = None  # the unfilled body's storage, while it is read
        self._filled = 0
        self._pieces: deque[bytes] = deque()
        self._queued = 0
        self._framing = Framing.NONE
        self._chunked: ChunkedDecoder | None = None
        self._counted: int | None = None  # an event stream with a content-length: bytes left
        self._paused_reading = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._sending = False
        self._answered_early = False  # the head came while the request was still being written
        self._last_read = 0.0
        self._timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the exchange

    async def send(
        self, method: bytes, head: bytes, body: bytes, read_timeout: float | None, write_timeout: float | None
    ) -> None:
        """Write a request. The body goes in pieces of ``UPLOAD_PIECE`` bytes, each waiting for
        the transport to drain below its high-water mark for at most ``write_timeout``: under TLS
        the socket's buffer is below the TLS layer, which signals a full buffer only for data it
        has not encrypted yet. Writing stops if the server refuses first (RFC 9112 9.5: a final
        head of 300 or more, a 413 say, or a response already whole, before it has read the
        upload); an early 2xx head is not a refusal (a server may answer, then read on), so the
        upload goes on. Either way a connection answered mid-upload is not reused. If the
        connection ends while the upload is unfinished and nothing was answered, the request
        cannot have been whole at the server: ``UploadCut``; once a head has come, a failed
        upload is a ``ProtocolError`` (it may have been acted on). The read timeout counts from
        the end of the upload."""
        assert self.transport is not None and self._state in (_State.IDLE, _State.DONE)
        self._state, self._method, self.head = _State.HEAD, method, None
        self._head_len, self._error, self._keep = 0, None, False
        self._body, self._view, self._filled = b"", None, 0
        self._pieces.clear()
        self._queued, self._chunked, self._counted = 0, None, None
        self._timeout = read_timeout
        self._sending, self._answered_early = True, False
        try:
            if len(body) <= UPLOAD_PIECE:
                self.transport.writelines([head, body] if body else [head])
            else:
                self.transport.write(head)
                view = memoryview(body)
                for start in range(0, len(view), UPLOAD_PIECE):
                    if self._refused():
                        break
                    if self._error is not None or self.closed or self.transport.is_closing():
                        raise UploadCut()  # pieces still unwritten: the server has no whole request
                    self.transport.write(view[start : start + UPLOAD_PIECE])
                    if self._write_paused:
                        await self._until(
                            lambda: not self._write_paused or self._refused(),
                            write_timeout,
                            WriteTimedOut,
                        )
        except (PeerClosed, UploadCut, WriteTimedOut) as exc:
            if self._answered():  # the server answered before the upload failed: not "not sent"
                raise ProtocolError("the upload failed after the response head") from exc
            if isinstance(exc, PeerClosed):
                raise UploadCut() from exc
            raise
        finally:
            self._sending = False
        self._touch()

    def _answered(self) -> bool:
        return self.head is not None

    def _refused(self) -> bool:
        """A head that ends the upload: an error status, or a response already whole."""
        head = self.head
        return head is not None and (head.status >= 300 or self._state is _State.DONE)

    async def read_head(self) -> ResponseHead:
        await self._until(lambda: self.head is not None, None, ReadTimedOut)
        assert self.head is not None
        return self.head

    @property
    def whole_body(self) -> bool:
        """After ``read_head``: True when the body is read whole (``read_body``), False when it
        comes in pieces (``read_piece``): chunked, close-delimited, or an event stream."""
        return self._framing in (Framing.LENGTH, Framing.NONE) and self._counted is None

    async def read_body(self) -> bytes | bytearray:
        """The whole body: ``bytes`` for a large one (``buffers.raw_bytes``), else a bytearray."""
        await self._until(lambda: self._state is _State.DONE, None, ReadTimedOut)
        body, self._body = self._body, b""
        return body

    async def read_piece(self) -> bytes | None:
        await self._until(lambda: bool(self._pieces) or self._state is _State.DONE, None, ReadTimedOut)
        if not self._pieces:
            return None
        piece = self._pieces.popleft()
        self._queued -= len(piece)
        if self._paused_reading and self._queued < STREAM_LOW_WATER and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        return piece

    @property
    def reusable(self) -> bool:
        """The exchange is over and the connection can carry the next one (which it cannot while
        any of an upload answered early is still unsent: those bytes would open the next one)."""
        return (
            self._state is _State.DONE
            and self._keep
            and not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and self.transport.get_write_buffer_size() == 0
        )

    def park(self) -> None:
        """Going idle: drop what the last exchange left (a body nobody read)."""
        self._body, self._view = b"", None
        self._pieces.clear()
        self._queued = 0

    def discard(self) -> None:
        """Done with a connection that cannot be reused: a clean close when nothing is left to
        send, else an abort (a graceful close would wait, with no owner, to flush an upload the
        server stopped reading)."""
        transport = self.transport
        if (
            transport is None
            or self._answered_early
            or transport.get_write_buffer_size() > 0
            or self._state is not _State.DONE
        ):
            self.abort()
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ waiting

    async def _until(
        self, ready: Callable[[], bool], limit_s: float | None, on_timeout: type[Exception]
    ) -> None:
        while not ready():
            if self._error is not None:
                raise self._error
            if self.closed:
                raise PeerClosed(got_head=self.head is not None)
            self._waiter = self._loop.create_future()
            if limit_s is not None:  # a write wait: a deadline of its own
                handle = self._loop.call_later(limit_s, self._on_deadline, ready, on_timeout)
                try:
                    await self._waiter
                finally:
                    handle.cancel()
            else:
                await self._waiter

    def _on_deadline(self, ready: Callable[[], bool], on_timeout: type[Exception]) -> None:
        # the wait may have ended in this same loop iteration (the buffer drained, a head came)
        # before this callback ran: then the deadline has not passed for anything
        if not ready():
            self._fail(on_timeout())

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._state is _State.DONE:  # the response is whole: what fails now is only the link
            self._keep = False
            if isinstance(error, ReadTimedOut | WriteTimedOut):
                self.abort()
            return
        if self._error is None:
            self._error = error
        self._body, self._view = b"", None  # a body cut short is never handed on
        self._keep = False
        self._cancel_timer()
        self._wake()
        if isinstance(error, ReadTimedOut | WriteTimedOut):
            self.abort()

    # The read timeout is inactivity, as in httpx: a timer re-armed from the last read, checked
    # when it fires (not re-created on every read).

    def _touch(self) -> None:
        self._last_read = self._loop.time()
        if self._timeout is not None and self._timer is None:
            self._timer = self._loop.call_at(self._last_read + self._timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._timeout is None or self._state not in (_State.HEAD, _State.BODY, _State.STREAM):
            return
        if self._paused_reading:  # our reader is slow, not the peer: not a timeout
            self._timer = self._loop.call_later(self._timeout, self._on_timer)
            return
        due = self._last_read + self._timeout
        if self._loop.time() >= due:
            self._fail(ReadTimedOut())
        else:
            self._timer = self._loop.call_at(due, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self) -> None:
        self._view = None  # the body is complete: nothing writes into it again
        self._state = _State.DONE
        self._cancel_timer()
        self._wake()

    # ------------------------------------------------------------------ asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state is _State.BODY and self._view is not None:
            return self._view[self._filled :]
        if self._state is _State.HEAD:
            return memoryview(self._head)[self._head_len :]
        if self._scratch is None:
            self._scratch = bytearray(STREAM_READ_BYTES)
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        self._last_read = self._loop.time()
        try:
            if self._state is _State.BODY:
                if self._view is None:  # failed: whatever still arrives is dropped
                    return
                self._filled += nbytes
                if self._filled == len(self._body):
                    self._finish()
            elif self._state is _State.HEAD:
                self._head_len += nbytes
                self._on_head_bytes(self._head_len - nbytes)
            elif self._state is _State.STREAM:
                assert self._scratch is not None
                self._on_stream_bytes(bytes(self._scratch[:nbytes]))
            else:  # bytes nobody asked for: the connection is out of step, never reuse it
                self._keep = False
                self.close()
        except ProtocolError as exc:
            self._fail(exc)
            self.abort()

    def _on_head_bytes(self, searched_to: int) -> None:
        while self._state is _State.HEAD:
            end = self._head.find(b"\r\n\r\n", max(0, searched_to - 3), self._head_len)
            if end < 0:
                if self._head_len == len(self._head):
                    raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
                return
            head = parse_head(bytes(self._head[:end]))
            rest = memoryview(self._head)[end + 4 : self._head_len]
            if 100 <= head.status < 200:  # an interim response (100 Continue): the real one follows
                self._head[: len(rest)] = bytes(rest)  # a copy first: the two ranges overlap
                self._head_len, searched_to = len(rest), 0
                continue
            self._start_body(head, bytes(rest))

    def _start_body(self, head: ResponseHead, rest: bytes) -> None:
        framing, length = framing_of(head, self._method)
        # a head that comes while the request is still being written: the rest of the upload would
        # open the next exchange, so this connection carries no other
        self.head = head
        self._answered_early = self._sending
        self._keep = reusable(head) and framing is not Framing.CLOSE and not self._answered_early
        self._head_len, self._framing = 0, framing
        if framing is Framing.LENGTH and _EVENT_STREAM in b"".join(head.get(b"content-type")):
            self._counted = length  # events are handed on as they come, not once all are in
            if length == 0:
                if rest:
                    raise ProtocolError("bytes after the end of the body")
                self._finish()
                return
        elif framing is Framing.LENGTH:
            if len(rest) > length:
                raise ProtocolError("more bytes than content-length")
            self._body, self._view = raw_bytes(length)
            self._view[: len(rest)] = rest
            self._filled = len(rest)
            self._state = _State.BODY
            if self._filled == length:
                self._finish()
            else:
                self._wake()  # the head is here
            return
        if framing is Framing.NONE:
            if rest:
                raise ProtocolError("bytes after a response without a body")
            self._finish()
            return
        self._chunked = ChunkedDecoder() if framing is Framing.CHUNKED else None
        self._state = _State.STREAM
        self._wake()
        if rest:
            self._on_stream_bytes(rest)

    def _on_stream_bytes(self, data: bytes) -> None:
        if self._chunked is not None:
            pieces, used = self._chunked.feed(data)
            ended = self._chunked.done
        elif self._counted is not None:
            used = min(len(data), self._counted)
            pieces, self._counted = [data[:used]], self._counted - used
            ended = self._counted == 0
        else:
            pieces, used, ended = [data], len(data), False
        for piece in pieces:
            if piece:
                self._pieces.append(piece)
                self._queued += len(piece)
        if ended:
            if used < len(data):
                raise ProtocolError("bytes after the end of the body")
            self._finish()
        elif self._pieces:
            self._wake()
        if (
            not self._paused_reading
            and self._queued > STREAM_HIGH_WATER
            and self._state is _State.STREAM
            and self.transport is not None
        ):
            self._paused_reading = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        # The peer's end: a FIN (a reset and our own abort go straight to connection_lost). Only
        # here may a close-delimited body end, and never over TLS: there a clean end is a
        # close_notify, and asyncio's loop calls this for a stream cut without one as well (uvloop
        # does not), so the two cannot be told apart. Azure frames every body by length or chunks.
        self._keep = False
        if (
            self._state is _State.STREAM
            and self._framing is Framing.CLOSE
            and self._error is None
            and not self._tls
        ):
            self._finish()
        self._on_end()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_end()
        self._cancel_timer()
        self._wake()

    def _on_end(self) -> None:
        self._keep = False
        if self._state in (_State.HEAD, _State.BODY, _State.STREAM):
            self._fail(PeerClosed(got_head=self.head is not None))
        self.closed = True

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

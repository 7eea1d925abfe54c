"""``upstream.http11``: the head parser, the chunked decoder, and one connection driven by a
scripted server over loopback sockets (every framing, every way a response can break)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegate.upstream import http11
from imagegate.upstream.http11 import ChunkedDecoder, Framing, ProtocolError, framing_of, parse_head
from imagegate.upstream.transport import Http11Transport

# ---------------------------------------------------------------------------------- head parsing


def test_head_is_parsed_with_names_lower_cased_and_values_stripped() -> None:
    head = parse_head(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After:  7 \r\nX-Ms-Region: swedencentral")
    assert (head.status, head.reason) == (429, b"Too Many Requests")
    assert head.headers == [(b"retry-after", b"7"), (b"x-ms-region", b"swedencentral")]
    assert not head.http10


@pytest.mark.parametrize(
    "block",
    [
        b"HTTP/2 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 200 OK\r\nno colon here",
        b"HTTP/1.1 200 OK\r\n folded: value",
        b"HTTP/1.1 200 OK\r\nbad name: x",
        b"HTTP/1.1 200 OK\r\n: empty name",
    ],
)
def test_malformed_heads_are_refused(block: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_head(block)


def _framing(fields: str, method: bytes = b"POST", status: int = 200) -> tuple[Framing, int]:
    block = f"HTTP/1.1 {status} X" + "".join(f"\r\n{f}" for f in fields.split("|") if f)
    return framing_of(parse_head(block.encode()), method)


def test_framing_follows_rfc_9112() -> None:
    assert _framing("content-length: 12") == (Framing.LENGTH, 12)
    assert _framing("content-length: 12, 12") == (Framing.LENGTH, 12)  # repeated, same value
    assert _framing("content-length: 12|content-length: 12") == (Framing.LENGTH, 12)
    assert _framing("transfer-encoding: chunked|content-length: 12") == (Framing.CHUNKED, 0)
    assert _framing("transfer-encoding: gzip, chunked") == (Framing.CHUNKED, 0)
    assert _framing("transfer-encoding: gzip") == (Framing.CLOSE, 0)
    assert _framing("") == (Framing.CLOSE, 0)
    assert _framing("content-length: 12", method=b"HEAD") == (Framing.NONE, 0)
    assert _framing("content-length: 12", status=204) == (Framing.NONE, 0)
    assert _framing("content-length: 12", status=304) == (Framing.NONE, 0)


@pytest.mark.parametrize("value", ["12, 13", "-1", "0x10", "1e3", "", "9999999999999999"])
def test_bad_content_length_is_an_error_not_a_guess(value: str) -> None:
    with pytest.raises(ProtocolError):
        _framing(f"content-length: {value}")


# ----------------------------------------------------------------------------- chunked decoding


def _chunked(pieces: list[bytes], *, extension: bool = False, trailer: bool = False) -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";name=value" if extension else b"", p) for p in pieces if p)
    return out + b"0\r\n" + (b"x-trailer: 1\r\n" if trailer else b"") + b"\r\n"


@given(
    pieces=st.lists(st.binary(min_size=0, max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
    extension=st.booleans(),
    trailer=st.booleans(),
)
def test_chunked_decoder_agrees_on_any_split(
    pieces: list[bytes], cuts: list[int], extension: bool, trailer: bool
) -> None:
    wire = _chunked(pieces, extension=extension, trailer=trailer)
    bounds = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    decoder = ChunkedDecoder()
    out: list[bytes] = []
    for start, stop in itertools.pairwise(bounds):
        got, used = decoder.feed(wire[start:stop])
        assert used == stop - start
        out += got
    assert decoder.done
    assert b"".join(out) == b"".join(pieces)


def test_chunked_decoder_stops_at_the_end_of_the_body() -> None:
    decoder = ChunkedDecoder()
    pieces, used = decoder.feed(b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200")
    assert pieces == [b"abc"] and used == len(b"3\r\nabc\r\n0\r\n\r\n") and decoder.done


@pytest.mark.parametrize(
    "wire",
    [b"zz\r\n", b"3\r\nabcd\r\n", b"3\nabc\r\n", b"-1\r\n", b"1" * 5000, b"10000000000000000\r\n"],
)
def test_chunked_decoder_refuses_bad_framing(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        ChunkedDecoder().feed(wire)


# ------------------------------------------------------------------ a connection against a script

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _request_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    await reader.readexactly(length)
    return head


class Scripted:
    """A loopback server that answers each connection with ``script``; counts connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/openai/deployments/d/images/generations?api-version=v"


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[Scripted]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> Scripted:
        srv = Scripted(script)
        srv.server = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
        servers.append(srv.server)
        return srv

    yield start
    for server in servers:
        server.close()


def _answers(*responses: bytes, then_close: bool = False) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await _request_head(reader)
            writer.write(response)
            await writer.drain()
        if not then_close:
            await reader.read()  # hold the connection until the client closes it

    return script


def _answer_then_hold(response: bytes, *, read_upload: bool) -> Script:
    """Read the request head (and its body when ``read_upload``), answer ``response``, then hold
    the connection open without reading or writing anything more."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if read_upload:
            await _request_head(reader)
        else:
            await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        await asyncio.sleep(30)

    return script


async def _client(**limits: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Http11Transport(limits=httpx.Limits(**limits)))  # type: ignore[arg-type]


OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"ok": true}'


async def test_content_length_body_and_keep_alive(scripted: Callable[[Script], Awaitable[Scripted]]) -> None:
    body = b"x" * 3_000_000
    big = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    srv = await scripted(_answers(big, big, b"HTTP/1.1 204 No Content\r\n\r\n"))
    async with await _client() as client:
        for _ in range(2):
            response = await client.post(srv.url, content=b"{}")
            assert response.status_code == 200 and response.content == body
        empty = await client.post(srv.url, content=b"{}")
        assert empty.status_code == 204 and empty.content == b""
    assert srv.connections == 1


async def test_chunked_and_close_delimited_bodies(scripted: Callable[[Script], Awaitable[Scripted]]) -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + _chunked([b"hello ", b"world"])
    srv = await scripted(_answers(chunked, chunked))
    async with await _client() as client:
        assert (await client.post(srv.url, content=b"{}")).content == b"hello world"
        assert (await client.post(srv.url, content=b"{}")).content == b"hello world"
    assert srv.connections == 1  # chunked keeps the connection
    closing = await scripted(_answers(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", then_close=True))
    async with await _client() as client:
        for _ in range(2):
            assert (await client.post(closing.url, content=b"{}")).content == b"until the end"
    assert closing.connections == 2  # a close-delimited body uses its connection up


async def test_interim_response_is_skipped(scripted: Callable[[Script], Awaitable[Scripted]]) -> None:
    srv = await scripted(_answers(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    async with await _client() as client:
        response = await client.post(srv.url, content=b"{}")
    assert response.status_code == 200 and response.json() == {"ok": True}


async def test_early_answer_to_an_upload_is_read_and_its_connection_not_reused(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    answered = asyncio.Event()
    too_large = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno"

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only: the upload is never read
        writer.write(too_large)
        await writer.drain()
        await answered.wait()

    srv = await scripted(refuse)
    async with await _client() as client:
        response = await client.post(srv.url, content=b"u" * 64_000_000)
        answered.set()
        assert (response.status_code, response.content) == (413, b"no")
        transport = client._transport
        assert isinstance(transport, Http11Transport) and transport._pool is not None
        assert sum(len(idle) for idle in transport._pool.idle.values()) == 0  # closed, not pooled


async def test_connection_close_is_honoured(scripted: Callable[[Script], Awaitable[Scripted]]) -> None:
    closing = OK.replace(b"content-type", b"connection: close\r\ncontent-type")
    srv = await scripted(_answers(closing, then_close=True))
    async with await _client() as client:
        for _ in range(2):
            assert (await client.post(srv.url, content=b"{}")).status_code == 200
    assert srv.connections == 2


async def test_event_stream_pieces_arrive_before_the_body_ends(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    release = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 20\r\n\r\n")
        writer.write(b"data: one\n\n")
        await writer.drain()
        await release.wait()
        writer.write(b"data: 2\n\n")
        await writer.drain()
        await reader.read()

    srv = await scripted(script)
    async with await _client() as client, client.stream("POST", srv.url, content=b"{}") as response:
        pieces = response.aiter_raw()
        assert await anext(pieces) == b"data: one\n\n"  # before the rest was even written
        release.set()
        assert [p async for p in pieces] == [b"data: 2\n\n"]


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", httpx.ReadError),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab", httpx.ReadError),
        (b"HTTP/1.1 200 OK\r\ncontent-len", httpx.RemoteProtocolError),
        (b"", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nabc", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nx: " + b"y" * http11.MAX_HEAD_BYTES, httpx.RemoteProtocolError),
        (b"SSH-2.0-OpenSSH\r\n\r\n", httpx.RemoteProtocolError),
    ],
    ids=[
        "short-length",
        "short-chunked",
        "cut-head",
        "no-response",
        "bad-chunk",
        "extra",
        "huge-head",
        "not-http",
    ],
)
async def test_broken_responses_map_to_sent_errors(
    scripted: Callable[[Script], Awaitable[Scripted]], wire: bytes, error: type[Exception]
) -> None:
    srv = await scripted(_answers(wire, then_close=True))
    async with await _client() as client:
        with pytest.raises(error) as info:
            await client.post(srv.url, content=b"{}")
    assert "127.0.0.1" not in str(info.value)


async def test_read_timeout_is_inactivity_not_total(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n")
        for byte in b"abcdefgh":  # 8 x 0.15 s: more than the read timeout in all, never silent long
            await asyncio.sleep(0.15)
            writer.write(bytes([byte]))
            await writer.drain()
        await reader.read()

    srv = await scripted(trickle)
    async with await _client() as client:
        response = await client.post(srv.url, content=b"{}", timeout=httpx.Timeout(5.0, read=1.0))
        assert response.content == b"abcdefgh"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nabc")
        await writer.drain()
        await reader.read()

    quiet = await scripted(silent)
    async with await _client() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(quiet.url, content=b"{}", timeout=httpx.Timeout(5.0, read=0.2))


async def test_pool_bounds_requests_in_flight(scripted: Callable[[Script], Awaitable[Scripted]]) -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _request_head(reader)
            arrived.set()
            await gate.wait()
            writer.write(OK)
            await writer.drain()

    srv = await scripted(held)
    async with await _client(max_connections=1) as client:
        first = asyncio.create_task(client.post(srv.url, content=b"{}"))
        await asyncio.wait_for(arrived.wait(), 10)  # the first request holds the only slot
        with pytest.raises(httpx.PoolTimeout):  # "not sent": safe to try elsewhere
            await client.post(srv.url, content=b"{}", timeout=httpx.Timeout(5.0, pool=0.1))
        gate.set()
        assert (await first).status_code == 200
        assert (await client.post(srv.url, content=b"{}")).status_code == 200  # the slot came back


async def test_idle_connection_closed_by_the_server_is_not_reused(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    srv = await scripted(_answers(OK, then_close=True))  # answers once, then hangs up
    async with await _client() as client:
        assert (await client.post(srv.url, content=b"{}")).status_code == 200
        transport = client._transport
        assert isinstance(transport, Http11Transport) and transport._pool is not None
        (idle,) = [conn for conns in transport._pool.idle.values() for conn in conns]
        for _ in range(500):  # until the server's close has reached the idle connection
            if idle.closed:
                break
            await asyncio.sleep(0.01)
        assert idle.closed
        assert (await client.post(srv.url, content=b"{}")).status_code == 200
    assert srv.connections == 2


async def test_abandoned_body_closes_its_connection(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    body = b"y" * 5_000_000
    big = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    srv = await scripted(_answers(big, OK))
    async with await _client() as client:
        async with client.stream("POST", srv.url, content=b"{}") as response:
            assert response.status_code == 200  # the body is left unread
        assert (await client.post(srv.url, content=b"{}")).status_code == 200
    assert srv.connections == 2


async def test_request_on_the_wire(scripted: Callable[[Script], Awaitable[Scripted]]) -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        seen.append(
            await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
        )
        writer.write(OK)
        await writer.drain()
        await reader.read()

    srv = await scripted(record)
    async with await _client() as client:
        await client.post(srv.url, content=b'{"prompt": "x"}', headers={"api-key": "k"})
    head, body = seen
    assert head.startswith(b"POST /openai/deployments/d/images/generations?api-version=v HTTP/1.1\r\n")
    assert b"\r\napi-key: k\r\n" in head and b"\r\nhost: 127.0.0.1:" in head.lower()
    assert body == b'{"prompt": "x"}'


async def test_refused_and_unsupported() -> None:
    async with await _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("http://127.0.0.1:9/x", content=b"{}")
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.post("ftp://127.0.0.1/x", content=b"{}")


# ----------------------------------------------------------- regressions found in review


async def test_reset_during_a_close_delimited_body_is_an_error_not_its_end(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN

    srv = await scripted(reset)
    async with await _client() as client:
        # ReadError when the head was read before the reset, RemoteProtocolError when the reset
        # overtook it; never a 200 with the 1000 bytes as the whole body
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await client.post(srv.url, content=b"{}")


async def test_early_answer_then_silence_ends_at_the_read_timeout(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    answer_then_stall = _answer_then_hold(  # never reads the upload, sends 10 of 100 body bytes
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 100\r\n\r\n" + b"n" * 10, read_upload=False
    )
    srv = await scripted(answer_then_stall)
    async with await _client() as client:
        with pytest.raises(httpx.ReadTimeout):
            await asyncio.wait_for(
                client.post(
                    srv.url, content=b"u" * 64_000_000, timeout=httpx.Timeout(5.0, read=0.5, write=0.5)
                ),
                timeout=10,
            )


async def test_closing_idle_connection_is_skipped_before_connection_lost_runs(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    """The server resets an idle connection in the same loop iteration in which another response
    completes; the request that follows must not take the dying connection ("maybe sent")."""
    loop = asyncio.get_running_loop()
    writers: list[asyncio.StreamWriter] = []
    answer_b = asyncio.Event()

    async def origin_a(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while True:
            await _request_head(reader)
            writer.write(OK)
            await writer.drain()

    async def origin_b(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        await answer_b.wait()
        writer.write(OK)
        await writer.drain()
        await reader.read()

    a, b = await scripted(origin_a), await scripted(origin_b)
    async with await _client() as client:
        assert (await client.post(a.url, content=b"{}")).status_code == 200  # now idle, pooled

        async def b_then_a() -> httpx.Response:
            await client.post(b.url, content=b"{}")
            return await client.post(a.url, content=b"{}")

        task = asyncio.create_task(b_then_a())
        await asyncio.sleep(0.1)
        sock = writers[0].get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        def burst() -> None:
            answer_b.set()
            writers[0].transport.abort()

        loop.call_soon(burst)
        for _ in range(3):
            await asyncio.sleep(0)
        time.sleep(0.2)  # noqa: ASYNC251 - blocks the loop on purpose: both sockets readable in one poll
        assert (await task).status_code == 200
    assert a.connections == 2


async def test_aclose_with_a_response_in_flight_closes_its_connection(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"cd")
        await writer.drain()
        await reader.read()

    srv = await scripted(slow)
    transport = Http11Transport()
    client = httpx.AsyncClient(transport=transport)
    async with client.stream("POST", srv.url, content=b"{}") as response:
        pool = transport._pool
        await client.aclose()  # shutting down mid-response
        assert await response.aread() == b"abcd"
    assert pool is not None and pool.closed and not any(pool.idle.values())


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n"
        + _chunked([b"ok"]),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n" + _chunked([b"ok"]),
    ],
    ids=["http10-chunked", "chunked-and-length"],
)
async def test_suspicious_framing_is_read_but_its_connection_closed(
    scripted: Callable[[Script], Awaitable[Scripted]], wire: bytes
) -> None:
    srv = await scripted(_answers(wire, wire))
    async with await _client() as client:
        for _ in range(2):
            assert (await client.post(srv.url, content=b"{}")).content == b"ok"
    assert srv.connections == 2


def test_status_below_100_is_refused() -> None:
    with pytest.raises(ProtocolError):
        parse_head(b"HTTP/1.1 099 Odd")


def test_trailers_are_bounded() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"0\r\n")
    with pytest.raises(ProtocolError):
        for _ in range(100):
            decoder.feed(b"x-trailer: " + b"t" * 1000 + b"\r\n")


class _FakeTransport:
    """Enough of a transport to drive a ``Connection`` by hand."""

    def __init__(self) -> None:
        self.written = b""
        self.aborted = False
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += bytes(data)

    def writelines(self, data: list[bytes]) -> None:
        for piece in data:
            self.write(piece)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.aborted = self.closing = True

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _feed(conn: http11.Connection, data: bytes) -> None:
    while data:
        buffer = conn.get_buffer(len(data))
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        conn.buffer_updated(n)
        data = data[n:]


async def test_a_write_deadline_due_after_its_wait_ended_is_ignored() -> None:
    """The drain and the deadline can land in one loop iteration; the deadline must then not
    turn a request the server got whole into a "not sent" WriteTimeout."""
    conn = http11.Connection(asyncio.get_running_loop())
    transport = _FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn._on_deadline(lambda: True, http11.WriteTimedOut)
    assert conn._error is None and not transport.aborted
    conn._on_deadline(lambda: False, http11.WriteTimedOut)
    assert isinstance(conn._error, http11.WriteTimedOut) and transport.aborted


async def test_a_failure_after_the_response_is_whole_keeps_its_body() -> None:
    conn = http11.Connection(asyncio.get_running_loop())
    transport = _FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    await conn.send(b"POST", b"POST / HTTP/1.1\r\n\r\n", b"", None, None)
    _feed(conn, b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 5\r\n\r\nlarge")
    conn._fail(http11.WriteTimedOut())  # a deadline due in the same iteration
    assert (await conn.read_head()).status == 413
    assert await conn.read_body() == b"large"
    assert not conn.reusable


async def test_our_own_abort_does_not_end_a_close_delimited_body(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    """A read timeout aborts the connection; the close that follows is ours, not the end of the
    body, so the stream ends in ReadTimeout, not as if it were whole."""

    one_event_then_silence = _answer_then_hold(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\n", read_upload=True
    )
    srv = await scripted(one_event_then_silence)
    async with (
        await _client() as client,
        client.stream("POST", srv.url, content=b"{}", timeout=httpx.Timeout(5.0, read=0.3)) as response,
    ):
        pieces = response.aiter_raw()
        assert await anext(pieces) == b"data: 1\n\n"
        with pytest.raises(httpx.ReadTimeout):
            await anext(pieces)


async def test_a_connection_answered_mid_upload_is_aborted_not_left_flushing(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    # the upload is never read, the socket never closed
    refuse = _answer_then_hold(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno", read_upload=False
    )
    srv = await scripted(refuse)
    async with (
        await _client() as client,
        client.stream("POST", srv.url, content=b"u" * 64_000_000) as response,
    ):
        assert response.status_code == 413 and await response.aread() == b"no"
        conn = response.stream._stream._conn  # type: ignore[attr-defined]  # httpx wraps our _Body
    assert conn.transport.is_closing()
    for _ in range(200):  # an abort drops the unsent upload at once; a graceful close would wait
        if conn.transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    assert conn.transport.get_write_buffer_size() == 0


async def test_an_early_2xx_head_does_not_stop_the_upload(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    """A server may send its head first and read the upload after (RFC 9112 9.5 lets a client
    stop only on an error status): stopping would leave both sides waiting for the other."""
    size = 64_000_000
    got: list[int] = []

    async def head_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        await writer.drain()
        got.append(len(await reader.readexactly(size)))
        writer.write(b"ok")
        await writer.drain()
        await reader.read()

    srv = await scripted(head_first)
    async with await _client() as client:
        response = await asyncio.wait_for(
            client.post(srv.url, content=b"u" * size, timeout=httpx.Timeout(10.0, read=2.0)), timeout=20
        )
    assert (response.status_code, response.content, got) == (200, b"ok", [size])


async def test_idle_connections_are_retired_before_uvicorns_5_s_idle_timeout(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    srv = await scripted(_answers(OK, OK, OK))
    async with httpx.AsyncClient(transport=Http11Transport()) as client:  # the default limits
        assert (await client.post(srv.url, content=b"{}")).status_code == 200
        transport = client._transport
        assert isinstance(transport, Http11Transport) and transport._pool is not None
        (idle,) = [conn for conns in transport._pool.idle.values() for conn in conns]
        idle.idle_since -= 3.9  # idle for 3.9 s: still reused
        assert (await client.post(srv.url, content=b"{}")).status_code == 200
        assert srv.connections == 1
        (idle,) = [conn for conns in transport._pool.idle.values() for conn in conns]
        idle.idle_since -= 4.1  # idle for 4.1 s: uvicorn would close it at 5 s; retired first
        assert (await client.post(srv.url, content=b"{}")).status_code == 200
    assert srv.connections == 2


async def test_the_production_client_asks_for_uncompressed_bodies(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _request_head(reader))
        writer.write(OK)
        await writer.drain()
        await reader.read()

    from imagegate.upstream.transport import pooled_client

    srv = await scripted(record)
    async with pooled_client() as client:
        assert (await client.post(srv.url, content=b"{}")).status_code == 200
    (head,) = heads
    assert b"\r\naccept-encoding: identity\r\n" in head.lower()


async def test_header_values_are_kept_as_bytes_whatever_they_hold(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    # obs-text (RFC 9110 allows bytes 0x80-0xFF in a field value): handed on, not a crash
    odd = b"HTTP/1.1 200 OK\r\nx-ms-region: Su\xe9de\r\napim-request-id: r-1\r\ncontent-length: 2\r\n\r\n{}"
    srv = await scripted(_answers(odd))
    async with await _client() as client:
        response = await client.post(srv.url, content=b"{}")
    assert response.headers.raw[0] == (b"x-ms-region", b"Su\xe9de")
    assert response.headers["apim-request-id"] == "r-1" and response.json() == {}

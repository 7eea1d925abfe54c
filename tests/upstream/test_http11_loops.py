"""``Http11Transport`` under both event loops the gateway runs on (asyncio's, and uvloop's for
``imagegate serve``), in plain TCP and in TLS (Azure's endpoints are HTTPS): a large body read
straight into its buffer, a chunked one, keep-alive reuse, and an untrusted certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagegate.upstream.transport import Http11Transport

BODY = bytes(range(256)) * 12_000  # ~3 MB, every byte value


def _runners() -> list[Any]:
    runners: list[Any] = [pytest.param(asyncio.run, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # Windows: serve runs on asyncio's loop there
        return runners
    return [*runners, pytest.param(uvloop.run, id="uvloop")]


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if b"/chunked" in head.split(b"\r\n")[0]:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                for start in range(0, len(BODY), 700_000):
                    piece = BODY[start : start + 700_000]
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(BODY) + BODY)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _exchange(tls: tuple[ssl.SSLContext, ssl.SSLContext] | None) -> Coroutine[Any, Any, list[int]]:
    async def run() -> list[int]:
        server_tls, client_tls = tls if tls else (None, None)
        connections: list[int] = []

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            await _serve(reader, writer)

        server = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        base = f"{'https' if tls else 'http'}://localhost:{port}"
        try:
            transport = Http11Transport(ssl_context=client_tls)
            async with httpx.AsyncClient(transport=transport) as client:
                for path in ("/whole", "/chunked", "/whole"):
                    response = await client.post(base + path, content=b'{"prompt": "x"}')
                    assert response.status_code == 200 and response.content == BODY, path
        finally:
            server.close()
        return connections

    return run()


@pytest.mark.parametrize("run", _runners())
def test_plain_tcp(run: Callable[[Coroutine[Any, Any, list[int]]], list[int]]) -> None:
    assert run(_exchange(None)) == [1]  # three exchanges, one connection


@pytest.mark.parametrize("run", _runners())
def test_tls(run: Callable[[Coroutine[Any, Any, list[int]]], list[int]], tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    assert run(_exchange((server, client))) == [1]


@pytest.mark.parametrize("run", _runners())
def test_untrusted_certificate_is_a_connect_error(
    run: Callable[[Coroutine[Any, Any, list[int]]], list[int]], tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    with pytest.raises(httpx.ConnectError):  # "not sent": nothing was billed
        run(_exchange((server, ssl.create_default_context())))


def _over_tls(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
    call: Callable[[httpx.AsyncClient, str], Coroutine[Any, Any, Any]],
    tmp: Path,
) -> Coroutine[Any, Any, Any]:
    """``call(client, url)`` against ``handler`` served over TLS; returns what ``call`` returns."""
    cert, key = _certificate(tmp)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def run() -> Any:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_tls)
        url = f"https://localhost:{server.sockets[0].getsockname()[1]}/x"
        try:
            async with httpx.AsyncClient(transport=Http11Transport(ssl_context=client_tls)) as client:
                return await call(client, url)
        finally:
            server.close()

    return run()


@pytest.mark.parametrize("run", _runners())
def test_tls_close_delimited_body_is_an_error(run: Callable[[Any], Any], tmp_path: Path) -> None:
    """Over TLS, a close without close_notify (a cut) cannot be told from a clean end."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        writer.transport.abort()

    async def call(client: httpx.AsyncClient, url: str) -> None:
        await client.get(url)

    with pytest.raises(httpx.ReadError):
        run(_over_tls(handler, call, tmp_path))


@pytest.mark.parametrize("run", _runners())
def test_tls_stalled_upload_is_a_write_timeout(run: Callable[[Any], Any], tmp_path: Path) -> None:
    """A write timeout is "not sent" (the request is not whole at the server); under TLS the
    socket buffer sits below the TLS layer, so the upload goes in pieces to see it fill."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)  # never reads the upload

    async def call(client: httpx.AsyncClient, url: str) -> None:
        await client.post(url, content=b"u" * 64_000_000, timeout=httpx.Timeout(10.0, write=0.5))

    with pytest.raises(httpx.WriteTimeout):
        run(_over_tls(handler, call, tmp_path))


@pytest.mark.parametrize("run", _runners())
def test_tls_early_answer_is_read_and_not_pooled(run: Callable[[Any], Any], tmp_path: Path) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\nno")
        await writer.drain()
        await asyncio.sleep(5)

    async def call(client: httpx.AsyncClient, url: str) -> tuple[int, bytes, int]:
        response = await client.post(url, content=b"u" * 64_000_000)
        transport = client._transport
        assert isinstance(transport, Http11Transport) and transport._pool is not None
        return response.status_code, response.content, sum(len(v) for v in transport._pool.idle.values())

    assert run(_over_tls(handler, call, tmp_path)) == (413, b"no", 0)

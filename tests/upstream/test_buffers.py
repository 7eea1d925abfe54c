"""``upstream.buffers.raw_bytes``: a body written through its view is an ordinary ``bytes``."""

from __future__ import annotations

import os
import platform

import pytest

from imagegate.upstream.buffers import RAW_MIN_BYTES, raw_bytes


@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="CPython's C API")
def test_large_body_is_bytes_filled_through_its_view() -> None:
    data = os.urandom(3 * RAW_MIN_BYTES + 17)
    body, view = raw_bytes(len(data))
    assert type(body) is bytes and len(body) == len(data) and len(view) == len(data)
    assert not view.readonly and view.format == "B"
    view[:10] = data[:10]  # in pieces, as reads arrive
    view[10:] = data[10:]
    assert body == data
    assert hash(body) == hash(data)  # hashed only once complete: as any other bytes
    assert body.decode("latin-1").encode("latin-1") == data
    assert bytes(memoryview(body)[5:9]) == data[5:9]


def test_small_body_is_a_zeroed_bytearray() -> None:
    body, view = raw_bytes(RAW_MIN_BYTES - 1)
    assert isinstance(body, bytearray) and body == bytearray(RAW_MIN_BYTES - 1)
    view[:3] = b"abc"
    assert body[:3] == b"abc"


def test_empty_body() -> None:
    body, view = raw_bytes(0)
    assert body == b"" and len(view) == 0

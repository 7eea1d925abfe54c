"""A body buffer the kernel can read into that is already the ``bytes`` httpx hands on.

``httpx.Response.content`` is ``bytes``. A body read into a ``bytearray`` costs two passes over
every image before anyone looks at it: ``bytearray(n)`` zero-fills it, and ``bytes(buf)`` copies
it. Measured at 16 concurrent 2.2 MB responses (py-spy on the gateway, ``bench_gateway.py
--pin``): 5.5 % of the gateway's CPU on the fill and 5.7 % on the copy.

CPython's C API has the call made for this: ``PyBytes_FromStringAndSize(NULL, n)`` returns a new
``bytes`` of ``n`` uninitialised bytes, for its maker to fill through ``PyBytes_AsString`` before
anyone else sees it (the way CPython's own readers build ``bytes``). ``raw_bytes`` makes one
through ``ctypes.pythonapi`` and returns it with a writable view of its storage. The rule the C
API sets is kept by the one caller (``http11.Connection``): the view is written only until the
body is complete and is released then, and a body that fails half-way is dropped, never handed
on. Where ``ctypes.pythonapi`` is missing (not CPython) a ``bytearray`` is used instead.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

__all__ = ["RAW_MIN_BYTES", "raw_bytes"]

RAW_MIN_BYTES = 64 * 1024  # below this, a bytearray and a copy cost nothing worth avoiding

_new: Callable[[Any, int], bytes] | None
_address: Callable[[bytes], int] | None
try:
    _from_size = ctypes.pythonapi.PyBytes_FromStringAndSize
    _from_size.restype = ctypes.py_object
    _from_size.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
    _as_string = ctypes.pythonapi.PyBytes_AsString
    _as_string.restype = ctypes.c_void_p
    _as_string.argtypes = [ctypes.py_object]
    _new, _address = _from_size, _as_string
except AttributeError:  # no CPython C API
    _new = _address = None


def raw_bytes(size: int) -> tuple[bytes | bytearray, memoryview]:
    """A body of ``size`` bytes and a writable view of all of it: ``bytes`` whose contents are
    undefined until written (from ``RAW_MIN_BYTES`` up, on CPython), else a zeroed bytearray."""
    if size >= RAW_MIN_BYTES and _new is not None and _address is not None:
        body = _new(None, size)
        storage = (ctypes.c_char * size).from_address(_address(body))
        return body, memoryview(storage).cast("B")
    buffer = bytearray(size)
    return buffer, memoryview(buffer)

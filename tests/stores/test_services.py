"""Service-backed tests skip when PostgreSQL/Redis are absent, and fail under CI's flag instead."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from _pytest.outcomes import Failed, Skipped


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_absent_service_skips_with_a_message(
    monkeypatch: pytest.MonkeyPatch, service_gate: Callable[[str, str, int], None]
) -> None:
    monkeypatch.delenv("IMAGEGATE_REQUIRE_SERVICES", raising=False)
    port = closed_port()
    with pytest.raises(Skipped, match=f"PostgreSQL is not reachable at 127.0.0.1:{port}"):
        service_gate("PostgreSQL", "127.0.0.1", port)


def test_absent_service_fails_when_required(
    monkeypatch: pytest.MonkeyPatch, service_gate: Callable[[str, str, int], None]
) -> None:
    monkeypatch.setenv("IMAGEGATE_REQUIRE_SERVICES", "1")
    with pytest.raises(Failed, match="IMAGEGATE_REQUIRE_SERVICES=1"):
        service_gate("Redis", "127.0.0.1", closed_port())

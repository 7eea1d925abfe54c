"""policy/keys.py: hashing and the authorisation decision (401 vs 403, with clear messages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from imagegate.errors import AuthenticationError, PermissionDenied
from imagegate.policy.budget import Period
from imagegate.policy.keys import RequestScope, authorize, hash_key, looks_like_key
from imagegate.ports import KeyRecord, KeyScope

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def key(**scope: object) -> KeyRecord:
    return KeyRecord(
        id="key_1",
        name="team-a",
        prefix="ig-Abcd",
        scope=KeyScope(**scope),
        created_at=NOW,  # type: ignore[arg-type]
        secret_hash="x" * 64,
    )


def test_hash_is_keyed_and_deterministic() -> None:
    assert hash_key("ig-abc", b"p1") == hash_key("ig-abc", b"p1")
    assert hash_key("ig-abc", b"p1") != hash_key("ig-abc", b"p2")
    assert hash_key("ig-abc", b"p1") != hash_key("ig-abd", b"p1")
    assert len(hash_key("ig-abc")) == 64
    assert looks_like_key("ig-" + "a" * 43) and not looks_like_key("sk-" + "a" * 43)


def test_unscoped_key_may_do_anything() -> None:
    auth = authorize(key(), RequestScope("dall-e-3", n=10, quality="hd"), NOW)
    assert auth.key_id == "key_1" and auth.budget is None and auth.rpm is None


def test_authorization_carries_rpm_and_budget() -> None:
    auth = authorize(key(rpm=30, budget_usd=Decimal(100), budget_period=Period.DAY), RequestScope("m"), NOW)
    assert auth.rpm == 30
    assert auth.budget is not None and auth.budget.name == "key:key_1" and auth.budget.period is Period.DAY


def test_missing_key_is_401() -> None:
    with pytest.raises(AuthenticationError, match="Incorrect API key"):
        authorize(None, RequestScope("m"), NOW)


@pytest.mark.parametrize(
    ("record", "when", "word"),
    [
        (KeyRecord("k", "n", "ig-x", KeyScope(), NOW, revoked_at=NOW), NOW, "revoked"),
        (
            KeyRecord("k", "n", "ig-x", KeyScope(), NOW, expires_at=NOW + timedelta(hours=1)),
            NOW + timedelta(hours=1),
            "expired",
        ),
    ],
)
def test_inactive_key_is_401(record: KeyRecord, when: datetime, word: str) -> None:
    with pytest.raises(AuthenticationError, match=word) as info:
        authorize(record, RequestScope("m"), when)
    assert info.value.http_status == 401


def test_revocation_in_the_future_is_not_yet_effective() -> None:
    record = KeyRecord("k", "n", "ig-x", KeyScope(), NOW, revoked_at=NOW + timedelta(seconds=1))
    authorize(record, RequestScope("m"), NOW)


@pytest.mark.parametrize(
    ("scope", "request_scope", "fragments"),
    [
        ({"models": ("gpt-image-1",)}, RequestScope("dall-e-3"), ["'dall-e-3'", "allows: gpt-image-1"]),
        ({"max_n": 2}, RequestScope("m", n=3), ["at most n=2", "n=3"]),
        ({"max_quality": "medium"}, RequestScope("m", quality="high"), ["up to 'medium'", "'high'"]),
        ({"max_quality": "standard"}, RequestScope("m", quality="hd"), ["'hd'"]),
        ({"max_quality": "medium"}, RequestScope("m", quality="auto"), ["'auto' may render at high"]),
        ({"max_quality": "medium"}, RequestScope("m", quality="ultra"), ["'ultra'"]),
    ],
)
def test_out_of_scope_is_403_naming_what(
    scope: dict[str, object], request_scope: RequestScope, fragments: list[str]
) -> None:
    with pytest.raises(PermissionDenied) as info:
        authorize(key(**scope), request_scope, NOW)
    assert info.value.http_status == 403
    assert "ig-Abcd" in info.value.message and "team-a" in info.value.message
    for fragment in fragments:
        assert fragment in info.value.message


@pytest.mark.parametrize(
    ("cap", "asked"), [("high", "high"), ("high", "low"), ("medium", "standard"), ("hd", "high")]
)
def test_quality_within_cap_is_allowed(cap: str, asked: str) -> None:
    authorize(key(max_quality=cap), RequestScope("m", quality=asked), NOW)

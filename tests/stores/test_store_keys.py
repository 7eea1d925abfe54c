"""KeyStore contract on every backend, plus secret hygiene (the plaintext appears only once)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from imagegate.errors import AuthenticationError, InvalidRequest, NotFound
from imagegate.policy.budget import Period
from imagegate.policy.keys import RequestScope, authorize
from imagegate.ports import KeyScope

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SCOPE = KeyScope(models=("gpt-image-1",), max_quality="high", max_n=4, rpm=30, budget_usd=Decimal("100"))


async def test_create_then_authenticate(stores: Any) -> None:
    new = await stores.keys.create("team-a", SCOPE, NOW)
    assert new.plaintext.startswith("ig-") and len(new.plaintext) >= 40
    assert new.record.prefix == new.plaintext[:7]
    found = await stores.keys.authenticate(new.plaintext)
    assert found is not None
    assert found.id == new.record.id and found.name == "team-a"
    assert found.scope == SCOPE
    assert found.created_at == NOW
    assert found.budget() is not None and found.budget().name == f"key:{found.id}"  # type: ignore[union-attr]
    assert found.budget().period is Period.MONTH  # type: ignore[union-attr]


async def test_wrong_or_mangled_key_is_not_found(stores: Any) -> None:
    new = await stores.keys.create("team-a", SCOPE, NOW)
    assert (
        await stores.keys.authenticate(new.plaintext[:-1] + ("A" if new.plaintext[-1] != "A" else "B"))
        is None
    )
    assert await stores.keys.authenticate("ig-nope") is None
    assert await stores.keys.authenticate("") is None


async def test_stored_hash_is_not_the_plaintext(stores: Any) -> None:
    new = await stores.keys.create("team-a", SCOPE, NOW)
    record = await stores.keys.get(new.record.id)
    assert record is not None
    assert new.plaintext not in record.secret_hash and len(record.secret_hash) == 64


async def test_revoke_hides_from_list_and_authorize_says_401(stores: Any) -> None:
    a = await stores.keys.create("a", KeyScope(), NOW)
    b = await stores.keys.create("b", KeyScope(), NOW + timedelta(seconds=1))
    revoked = await stores.keys.revoke(a.record.id, NOW + timedelta(minutes=1))
    again = await stores.keys.revoke(a.record.id, NOW + timedelta(minutes=5))  # idempotent
    assert revoked.revoked_at == again.revoked_at == NOW + timedelta(minutes=1)
    assert [k.name for k in await stores.keys.list()] == ["b"]
    assert [k.name for k in await stores.keys.list(include_revoked=True)] == ["a", "b"]
    record = await stores.keys.authenticate(a.plaintext)
    with pytest.raises(AuthenticationError, match="revoked"):
        authorize(record, RequestScope("gpt-image-1"), NOW + timedelta(minutes=2))
    assert authorize(await stores.keys.authenticate(b.plaintext), RequestScope("x"), NOW).key_name == "b"


async def test_revoke_unknown_is_not_found(stores: Any) -> None:
    with pytest.raises(NotFound, match="key_missing"):
        await stores.keys.revoke("key_missing", NOW)


async def test_update_scope(stores: Any) -> None:
    new = await stores.keys.create("a", SCOPE, NOW)
    changed = KeyScope(models=(), budget_usd=Decimal("5.5"), budget_period=Period.DAY)
    updated = await stores.keys.update_scope(new.record.id, changed)
    assert updated.scope == changed
    assert (await stores.keys.authenticate(new.plaintext)).scope == changed  # type: ignore[union-attr]


async def test_expiry_is_kept(stores: Any) -> None:
    new = await stores.keys.create("temp", KeyScope(), NOW, expires_at=NOW + timedelta(days=1))
    record = await stores.keys.authenticate(new.plaintext)
    with pytest.raises(AuthenticationError, match="expired"):
        authorize(record, RequestScope("m"), NOW + timedelta(days=2))


@pytest.mark.parametrize(
    ("name", "scope", "field"),
    [
        ("", KeyScope(), "name"),
        ("ok", KeyScope(max_n=0), "max_n"),
        ("ok", KeyScope(rpm=-1), "rpm"),
        ("ok", KeyScope(budget_usd=Decimal("-1")), "budget_usd"),
    ],
)
async def test_bad_input_names_the_field(stores: Any, name: str, scope: KeyScope, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await stores.keys.create(name, scope, NOW)
    assert info.value.field == field and field in info.value.message


async def test_plaintext_never_in_repr_logs_or_list(stores: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # log every SQL statement + params
    try:
        new = await stores.keys.create("team-a", SCOPE, NOW)
        listed = await stores.keys.list(include_revoked=True)
        found = await stores.keys.authenticate(new.plaintext)
        await stores.keys.revoke(new.record.id, NOW)
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    secret = new.plaintext
    random_part = secret[3:]
    texts = [repr(new), str(new), repr(new.record), repr(listed), repr(found), repr(stores), caplog.text]
    for t in texts:
        assert random_part not in t
    assert "secret_hash" not in repr(found)
    assert caplog.records or repr(stores).startswith("Memory")  # SQL backends did log their statements

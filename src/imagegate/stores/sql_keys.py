"""Virtual keys in SQL (SQLite or PostgreSQL), behind :class:`imagegate.ports.KeyStore`.

Only the HMAC of a key is stored; lookups are one indexed equality on that hash, and the row's
hash is compared again with :func:`hmac.compare_digest` before it is trusted.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.errors import InvalidRequest, NotFound
from imagegate.policy.budget import Period, nanos_to_usd, usd_to_nanos
from imagegate.policy.keys import DEFAULT_PEPPER, hash_key
from imagegate.ports import KeyRecord, KeyScope, NewKey
from imagegate.stores.engine import reader
from imagegate.stores.failures import maps_storage_errors
from imagegate.stores.keymaterial import new_key_material
from imagegate.stores.schema import api_keys

__all__ = ["SqlKeyStore", "validate_key_input"]


def validate_key_input(name: str, scope: KeyScope) -> None:
    """Reject bad admin input with a message naming the field (shared by every KeyStore)."""
    if not name or len(name) > 200 or not name.isprintable():
        raise InvalidRequest.for_field("name", name, "1-200 printable characters")
    if scope.max_n is not None and scope.max_n < 1:
        raise InvalidRequest.for_field("max_n", scope.max_n, "an integer >= 1")
    if scope.rpm is not None and scope.rpm < 1:
        raise InvalidRequest.for_field("rpm", scope.rpm, "an integer >= 1 requests per minute")
    if scope.budget_usd is not None and scope.budget_usd < 0:
        raise InvalidRequest.for_field("budget_usd", str(scope.budget_usd), "a non-negative USD amount")


def scope_columns(scope: KeyScope) -> dict[str, Any]:
    return {
        "models": json.dumps(list(scope.models)),
        "max_quality": scope.max_quality,
        "max_n": scope.max_n,
        "rpm": scope.rpm,
        "budget_nanos": None if scope.budget_usd is None else usd_to_nanos(scope.budget_usd),
        "budget_period": scope.budget_period.value,
    }


def record_from_row(row: Mapping[Any, Any]) -> KeyRecord:
    scope = KeyScope(
        models=tuple(json.loads(row["models"])),
        max_quality=row["max_quality"],
        max_n=row["max_n"],
        rpm=row["rpm"],
        budget_usd=None if row["budget_nanos"] is None else nanos_to_usd(row["budget_nanos"]),
        budget_period=Period(row["budget_period"]),
    )
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scope=scope,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        secret_hash=row["secret_hash"],
    )


@maps_storage_errors("the database")
class SqlKeyStore:
    def __init__(self, engine: AsyncEngine, *, pepper: bytes = DEFAULT_PEPPER) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._pepper = pepper

    def __repr__(self) -> str:
        return f"SqlKeyStore({self._engine.url.render_as_string(hide_password=True)!r})"

    async def create(
        self, name: str, scope: KeyScope, now: datetime, *, expires_at: datetime | None = None
    ) -> NewKey:
        validate_key_input(name, scope)
        material = new_key_material(self._pepper)
        values = {
            "id": material.key_id,
            "name": name,
            "prefix": material.prefix,
            "secret_hash": material.secret_hash,
            "created_at": now,
            "expires_at": expires_at,
            "revoked_at": None,
            **scope_columns(scope),
        }
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.insert().values(**values))
        return NewKey(record=record_from_row(values), plaintext=material.plaintext)

    async def authenticate(self, plaintext: str) -> KeyRecord | None:
        digest = hash_key(plaintext, self._pepper)
        async with self._reader.connect() as conn:
            row = (
                (await conn.execute(select(api_keys).where(api_keys.c.secret_hash == digest)))
                .mappings()
                .first()
            )
        if row is None or not hmac.compare_digest(row["secret_hash"], digest):
            return None
        return record_from_row(row)

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings().first()
        return None if row is None else record_from_row(row)

    async def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [record_from_row(r) for r in rows]

    async def revoke(self, key_id: str, now: datetime) -> KeyRecord:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return await self._must_get(key_id)

    async def update_scope(self, key_id: str, scope: KeyScope) -> KeyRecord:
        validate_key_input("x", scope)
        async with self._engine.begin() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**scope_columns(scope)))
        return await self._must_get(key_id)

    async def _must_get(self, key_id: str) -> KeyRecord:
        record = await self.get(key_id)
        if record is None:
            raise NotFound(f"no API key with id {key_id!r}")
        return record

"""Idempotency keys in SQL: an atomic claim on a unique (key id, Idempotency-Key) pair.

Claiming is ``INSERT ... ON CONFLICT DO NOTHING``: of any number of concurrent requests with the
same pair, exactly one inserts the row and owns it; the others see it ``in_progress`` (and wait,
see ``stores/idempotency.py``) or ``done`` (and replay). An entry whose ``expires_at`` has passed
— a finished response past its TTL, or an in-progress claim whose owner died and whose lease ran
out — is taken over with one conditional ``UPDATE ... WHERE expires_at <= now``, again won by
exactly one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.errors import Conflict, InvalidRequest, StorageError
from imagegate.ports import ClaimStatus, IdempotencyClaim, IdempotencyRecord
from imagegate.stores.engine import reader
from imagegate.stores.failures import maps_storage_errors
from imagegate.stores.schema import idempotency_keys
from imagegate.stores.sql_budget import insert_ignoring_conflicts

__all__ = ["SqlIdempotencyStore", "conflict_error", "validate_idem_key"]

_I = idempotency_keys.c
MAX_IDEM_KEY = 255
_CLAIM_ROUNDS = 5


def validate_idem_key(idem_key: str) -> None:
    if not idem_key or len(idem_key) > MAX_IDEM_KEY or not idem_key.isprintable():
        raise InvalidRequest.for_field("Idempotency-Key", idem_key, f"1-{MAX_IDEM_KEY} printable characters")


def conflict_error(idem_key: str) -> Conflict:
    return Conflict(
        f"Idempotency-Key {idem_key!r} was already used with a different request body or parameters; "
        "use a new key for a different request"
    )


def _record(row: Mapping[Any, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        key_id=row["key_id"],
        idem_key=row["idem_key"],
        fingerprint=row["fingerprint"],
        state=row["state"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        response_ref=row["response_ref"],
    )


@maps_storage_errors("the database")
class SqlIdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)

    async def claim(
        self, key_id: str, idem_key: str, fingerprint: str, now: datetime, *, lease_s: float
    ) -> IdempotencyClaim:
        validate_idem_key(idem_key)
        fresh = {
            "key_id": key_id,
            "idem_key": idem_key,
            "fingerprint": fingerprint,
            "state": "in_progress",
            "response_ref": None,
            "created_at": now,
            "expires_at": now + timedelta(seconds=lease_s),
        }
        for _ in range(_CLAIM_ROUNDS):
            async with self._engine.begin() as conn:
                inserted = await conn.execute(insert_ignoring_conflicts(conn, idempotency_keys, fresh))
                if inserted.rowcount == 1:
                    return IdempotencyClaim(ClaimStatus.CLAIMED, _record(fresh))
                taken = await conn.execute(
                    update(idempotency_keys)
                    .where(_I.key_id == key_id, _I.idem_key == idem_key, _I.expires_at <= now)
                    .values(**fresh)
                )
                if taken.rowcount == 1:
                    return IdempotencyClaim(ClaimStatus.CLAIMED, _record(fresh))
                row = (
                    (
                        await conn.execute(
                            select(idempotency_keys).where(_I.key_id == key_id, _I.idem_key == idem_key)
                        )
                    )
                    .mappings()
                    .first()
                )
            if row is not None:
                break
            # The owner released between our INSERT and SELECT (READ COMMITTED): claim again.
        else:
            raise StorageError(f"could not claim Idempotency-Key {idem_key!r}: it keeps changing hands")
        record = _record(row)
        if record.fingerprint != fingerprint:
            raise conflict_error(idem_key)
        status = ClaimStatus.DONE if record.state == "done" else ClaimStatus.IN_PROGRESS
        return IdempotencyClaim(status, record)

    async def complete(
        self, key_id: str, idem_key: str, response_ref: str, now: datetime, *, ttl_s: float
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(idempotency_keys)
                .where(_I.key_id == key_id, _I.idem_key == idem_key, _I.state == "in_progress")
                .values(state="done", response_ref=response_ref, expires_at=now + timedelta(seconds=ttl_s))
            )

    async def release(self, key_id: str, idem_key: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(idempotency_keys).where(
                    _I.key_id == key_id, _I.idem_key == idem_key, _I.state == "in_progress"
                )
            )

    async def get(self, key_id: str, idem_key: str) -> IdempotencyRecord | None:
        async with self._reader.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(idempotency_keys).where(_I.key_id == key_id, _I.idem_key == idem_key)
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else _record(row)

    async def purge_expired(self, now: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(idempotency_keys).where(_I.expires_at <= now))
        return int(result.rowcount)

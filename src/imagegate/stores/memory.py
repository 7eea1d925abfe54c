"""In-process adapters for every port: for the library face, tests, and one-shot CLI runs.

They are atomic for the same reason asyncio code is: no method awaits between reading and
writing its state, so concurrent coroutines in one event loop cannot interleave inside one.
They pass the same contract suite as the SQL adapters; state is lost when the process exits.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from imagegate.errors import NotFound
from imagegate.policy.budget import (
    BudgetSpec,
    BudgetWindow,
    check_reservation,
    nanos_to_usd,
    usd_to_nanos,
    window_end,
    window_start,
)
from imagegate.policy.keys import DEFAULT_PEPPER, hash_key
from imagegate.ports import (
    AuditEvent,
    BudgetUsage,
    ClaimStatus,
    CostGroup,
    CostRow,
    EntryKind,
    IdempotencyClaim,
    IdempotencyRecord,
    KeyRecord,
    KeyScope,
    LedgerEntry,
    NewKey,
    Reservation,
)
from imagegate.stores.audit import new_event_id
from imagegate.stores.keymaterial import new_key_material
from imagegate.stores.sql_budget import new_reservation_id
from imagegate.stores.sql_idempotency import conflict_error, validate_idem_key
from imagegate.stores.sql_keys import validate_key_input
from imagegate.stores.sql_ledger import entry_kind_for, group_label, utc_day

__all__ = [
    "MemoryAuditLog",
    "MemoryBudgetLedger",
    "MemoryIdempotencyStore",
    "MemoryKeyStore",
    "MemoryLedger",
    "MemoryStores",
]


class MemoryKeyStore:
    def __init__(self, *, pepper: bytes = DEFAULT_PEPPER) -> None:
        self._pepper = pepper
        self._by_id: dict[str, KeyRecord] = {}

    def __repr__(self) -> str:
        return f"MemoryKeyStore({len(self._by_id)} keys)"

    async def create(
        self, name: str, scope: KeyScope, now: datetime, *, expires_at: datetime | None = None
    ) -> NewKey:
        validate_key_input(name, scope)
        m = new_key_material(self._pepper)
        record = KeyRecord(
            id=m.key_id,
            name=name,
            prefix=m.prefix,
            scope=scope,
            created_at=now,
            expires_at=expires_at,
            secret_hash=m.secret_hash,
        )
        self._by_id[record.id] = record
        return NewKey(record=record, plaintext=m.plaintext)

    async def authenticate(self, plaintext: str) -> KeyRecord | None:
        digest = hash_key(plaintext, self._pepper)
        found = None
        for record in self._by_id.values():  # compare every one: no early exit to time
            if hmac.compare_digest(record.secret_hash, digest):
                found = record
        return found

    async def get(self, key_id: str) -> KeyRecord | None:
        return self._by_id.get(key_id)

    async def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        records = sorted(self._by_id.values(), key=lambda r: (r.created_at, r.id))
        return [r for r in records if include_revoked or r.revoked_at is None]

    async def revoke(self, key_id: str, now: datetime) -> KeyRecord:
        record = self._must_get(key_id)
        if record.revoked_at is None:
            record = self._by_id[key_id] = replace(record, revoked_at=now)
        return record

    async def update_scope(self, key_id: str, scope: KeyScope) -> KeyRecord:
        validate_key_input("x", scope)
        record = self._by_id[key_id] = replace(self._must_get(key_id), scope=scope)
        return record

    def _must_get(self, key_id: str) -> KeyRecord:
        if key_id not in self._by_id:
            raise NotFound(f"no API key with id {key_id!r}")
        return self._by_id[key_id]


@dataclass
class _Hold:
    window: tuple[str, str, datetime]  # budget, period, start
    amount: int
    created_at: datetime
    state: str = "held"


class MemoryBudgetLedger:
    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, datetime], BudgetWindow] = {}  # by budget, period, start
        self._holds: dict[str, list[_Hold]] = {}

    async def reserve(self, budgets: Sequence[BudgetSpec], amount_usd: Decimal, now: datetime) -> Reservation:
        if amount_usd < 0:
            raise ValueError("a reservation amount cannot be negative")
        amount = usd_to_nanos(amount_usd, round_up=True)
        ordered = sorted({b.name: b for b in budgets}.values(), key=lambda b: b.name)
        keys = [_window_key(spec, now) for spec in ordered]
        for spec, key in zip(ordered, keys, strict=True):  # check all first: all or nothing
            check_reservation(spec, self._windows.get(key, BudgetWindow()), amount, now)
        rid = new_reservation_id()
        for key in keys:
            w = self._windows.get(key, BudgetWindow())
            self._windows[key] = replace(w, reserved_nanos=w.reserved_nanos + amount)
        self._holds[rid] = [_Hold(key, amount, now) for key in keys]
        return Reservation(
            id=rid, budgets=tuple(b.name for b in ordered), amount_usd=amount_usd, created_at=now
        )

    async def settle(self, reservation_id: str, actual_usd: Decimal, now: datetime) -> None:
        self._close(reservation_id, usd_to_nanos(actual_usd))

    async def release(self, reservation_id: str, now: datetime) -> None:
        self._close(reservation_id, 0)

    def _close(self, reservation_id: str, actual: int) -> None:
        if actual < 0:
            raise ValueError("an actual cost cannot be negative")
        for hold in self._holds.get(reservation_id, []):
            if hold.state != "held":
                continue
            hold.state = "closed"
            w = self._windows[hold.window]
            self._windows[hold.window] = BudgetWindow(w.spent_nanos + actual, w.reserved_nanos - hold.amount)

    async def release_stale(self, *, created_before: datetime, now: datetime) -> int:
        stale = [
            rid
            for rid, hs in self._holds.items()
            if any(h.state == "held" and h.created_at < created_before for h in hs)
        ]
        for rid in stale:
            self._close(rid, 0)
        return len(stale)

    async def seed(self, spec: BudgetSpec, spent_usd: Decimal, now: datetime) -> None:
        if spent_usd < 0:
            raise ValueError("a spent amount cannot be negative")
        key = _window_key(spec, now)
        w = self._windows.get(key, BudgetWindow())
        self._windows[key] = replace(w, spent_nanos=max(w.spent_nanos, usd_to_nanos(spent_usd)))

    async def usage(self, spec: BudgetSpec, now: datetime) -> BudgetUsage:
        start = window_start(spec.period, now)
        w = self._windows.get(_window_key(spec, now), BudgetWindow())
        return BudgetUsage(
            spec=spec,
            window_start=start,
            window_end=window_end(spec.period, now),
            spent_usd=nanos_to_usd(w.spent_nanos),
            reserved_usd=nanos_to_usd(w.reserved_nanos),
        )


def _window_key(spec: BudgetSpec, now: datetime) -> tuple[str, str, datetime]:
    return spec.name, spec.period.value, window_start(spec.period, now)


class MemoryLedger:
    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []

    async def record(self, entry: LedgerEntry) -> None:
        await self.record_many((entry,))

    async def record_many(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            utc_day(entry.started_at)  # same validation as SQL (aware datetimes), before any write
        self._entries.extend(replace(e, cost_usd=nanos_to_usd(usd_to_nanos(e.cost_usd))) for e in entries)

    def _select(
        self, kind: EntryKind | None, since: datetime | None, until: datetime | None
    ) -> list[LedgerEntry]:
        return [
            e
            for e in self._entries
            if (kind is None or e.kind is kind)
            and (since is None or e.started_at >= since)
            and (until is None or e.started_at < until)
        ]

    async def summarize(
        self, by: CostGroup, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[CostRow]:
        groups: dict[str, list[LedgerEntry]] = defaultdict(list)
        for e in self._select(entry_kind_for(by), since, until):
            value = {
                CostGroup.KEY: e.key_id,
                CostGroup.MODEL: e.logical_model,
                CostGroup.DEPLOYMENT: e.deployment,
                CostGroup.DAY: utc_day(e.started_at),
            }[by]
            groups[group_label(value)].append(e)
        return [
            CostRow(
                group=g,
                requests=len(es),
                images=sum(e.n for e in es if e.status == "ok"),
                cost_usd=nanos_to_usd(sum(usd_to_nanos(e.cost_usd) for e in es)),
                estimated=sum(1 for e in es if not e.cost_exact),
            )
            for g, es in sorted(groups.items(), key=lambda kv: (kv[0] == "(none)", kv[0]))
        ]

    async def total(self, *, since: datetime, until: datetime | None = None) -> Decimal:
        return nanos_to_usd(
            sum(usd_to_nanos(e.cost_usd) for e in self._select(EntryKind.REQUEST, since, until))
        )

    async def entries(
        self, *, request_id: str | None = None, since: datetime | None = None
    ) -> list[LedgerEntry]:
        found = self._select(None, since, None)
        if request_id is not None:
            found = [e for e in found if e.request_id == request_id]
        return sorted(found, key=lambda e: e.started_at)


class MemoryIdempotencyStore:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], IdempotencyRecord] = {}

    async def claim(
        self, key_id: str, idem_key: str, fingerprint: str, now: datetime, *, lease_s: float
    ) -> IdempotencyClaim:
        validate_idem_key(idem_key)
        existing = self._records.get((key_id, idem_key))
        if existing is None or existing.expires_at <= now:
            record = IdempotencyRecord(
                key_id, idem_key, fingerprint, "in_progress", now, now + timedelta(seconds=lease_s)
            )
            self._records[(key_id, idem_key)] = record
            return IdempotencyClaim(ClaimStatus.CLAIMED, record)
        if existing.fingerprint != fingerprint:
            raise conflict_error(idem_key)
        status = ClaimStatus.DONE if existing.state == "done" else ClaimStatus.IN_PROGRESS
        return IdempotencyClaim(status, existing)

    async def complete(
        self, key_id: str, idem_key: str, response_ref: str, now: datetime, *, ttl_s: float
    ) -> None:
        existing = self._records.get((key_id, idem_key))
        if existing is not None and existing.state == "in_progress":
            self._records[(key_id, idem_key)] = replace(
                existing, state="done", response_ref=response_ref, expires_at=now + timedelta(seconds=ttl_s)
            )

    async def release(self, key_id: str, idem_key: str) -> None:
        existing = self._records.get((key_id, idem_key))
        if existing is not None and existing.state == "in_progress":
            del self._records[(key_id, idem_key)]

    async def get(self, key_id: str, idem_key: str) -> IdempotencyRecord | None:
        return self._records.get((key_id, idem_key))

    async def purge_expired(self, now: datetime) -> int:
        expired = [k for k, r in self._records.items() if r.expires_at <= now]
        for k in expired:
            del self._records[k]
        return len(expired)


class MemoryAuditLog:
    def __init__(self) -> None:
        self._events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        for event in events:
            if event.cost_usd is not None:
                event = replace(event, cost_usd=nanos_to_usd(usd_to_nanos(event.cost_usd)))
            self._events.append(event if event.id else replace(event, id=new_event_id()))

    async def export(self, *, since: datetime | None = None) -> AsyncIterator[AuditEvent]:
        for event in list(self._events):
            if since is None or event.at >= since:
                yield event


@dataclass(frozen=True, slots=True)
class MemoryStores:
    keys: MemoryKeyStore = field(default_factory=MemoryKeyStore)
    budgets: MemoryBudgetLedger = field(default_factory=MemoryBudgetLedger)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    idempotency: MemoryIdempotencyStore = field(default_factory=MemoryIdempotencyStore)
    audit: MemoryAuditLog = field(default_factory=MemoryAuditLog)

    async def aclose(self) -> None:
        return None

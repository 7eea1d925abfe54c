"""Ports: the storage contracts the request path talks to, and the records that cross them.

``pipeline`` and ``upstream`` depend on these Protocols only; composition roots (``api``,
``server``, ``cli``) build the adapters in ``imagegate.stores`` (memory, SQLite/PostgreSQL via
SQLAlchemy, Redis, a local blob directory) and pass them in. The same contract test suite runs
against every adapter, so the embedded defaults and the scale-out ones stay interchangeable.

Money is ``Decimal`` USD in every record. Times are aware UTC datetimes, always passed in by the
caller (``now``), so tests drive them with a fake clock.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from imagegate.policy.budget import BudgetSpec
from imagegate.policy.keys import KeyRecord, KeyScope

__all__ = [
    "AuditEvent",
    "AuditLog",
    "BlobRef",
    "BlobStore",
    "BudgetLedger",
    "BudgetUsage",
    "ClaimStatus",
    "CostGroup",
    "CostRow",
    "EntryKind",
    "IdempotencyClaim",
    "IdempotencyRecord",
    "IdempotencyStore",
    "KeyRecord",
    "KeyScope",
    "KeyStore",
    "Ledger",
    "LedgerEntry",
    "NewKey",
    "RateLimiter",
    "Reservation",
]


# ---------------------------------------------------------------------------------------------
# virtual keys (KeyScope and KeyRecord are defined with the policy that judges them)


@dataclass(frozen=True, slots=True)
class NewKey:
    """Returned once by :meth:`KeyStore.create`: the plaintext is shown to the admin, then gone."""

    record: KeyRecord
    plaintext: str = field(repr=False)


class KeyStore(Protocol):
    async def create(
        self, name: str, scope: KeyScope, now: datetime, *, expires_at: datetime | None = None
    ) -> NewKey: ...

    async def authenticate(self, plaintext: str) -> KeyRecord | None:
        """The key whose hash matches ``plaintext`` (revoked or not), or None."""
        ...

    async def get(self, key_id: str) -> KeyRecord | None: ...

    async def list(self, *, include_revoked: bool = False) -> list[KeyRecord]: ...

    async def revoke(self, key_id: str, now: datetime) -> KeyRecord:
        """Mark revoked (idempotent). Raises NotFound for an unknown id."""
        ...

    async def update_scope(self, key_id: str, scope: KeyScope) -> KeyRecord: ...


# ---------------------------------------------------------------------------------------------
# budgets


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money held against one or more budgets until settled or released."""

    id: str
    budgets: tuple[str, ...]
    amount_usd: Decimal
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    spec: BudgetSpec
    window_start: datetime
    window_end: datetime | None
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def remaining_usd(self) -> Decimal:
        return max(Decimal(0), self.spec.limit_usd - self.spent_usd - self.reserved_usd)


class BudgetLedger(Protocol):
    """Atomic reservations: concurrent ``reserve`` calls can never hold more than a limit."""

    async def reserve(self, budgets: Sequence[BudgetSpec], amount_usd: Decimal, now: datetime) -> Reservation:
        """Hold ``amount_usd`` on every budget at once, or on none (raises BudgetExceeded)."""
        ...

    async def settle(self, reservation_id: str, actual_usd: Decimal, now: datetime) -> None:
        """Replace the hold by the actual cost (which may exceed it). Idempotent."""
        ...

    async def release(self, reservation_id: str, now: datetime) -> None:
        """Drop the hold; nothing was spent. Idempotent."""
        ...

    async def usage(self, spec: BudgetSpec, now: datetime) -> BudgetUsage: ...

    async def seed(self, spec: BudgetSpec, spent_usd: Decimal, now: datetime) -> None:
        """Make the window of ``spec`` that holds ``now`` count at least ``spent_usd`` as spent
        (what was spent in it before the budget had this period); never lowers it. One atomic
        step that leaves its holds alone, so reservations made meanwhile are all kept."""
        ...

    async def release_stale(self, *, created_before: datetime, now: datetime) -> int:
        """Release holds made before ``created_before`` (their process died before settling)."""
        ...


# ---------------------------------------------------------------------------------------------
# cost ledger


class EntryKind(enum.StrEnum):
    REQUEST = "request"  # one per client request; cost = everything billed for it
    ATTEMPT = "attempt"  # one per upstream attempt; cost = what that attempt billed


class CostGroup(enum.StrEnum):
    KEY = "key"
    MODEL = "model"
    DEPLOYMENT = "deployment"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    kind: EntryKind
    request_id: str
    started_at: datetime
    status: str  # "ok", "error", "rejected", ...
    cost_usd: Decimal = Decimal(0)
    cost_exact: bool = False  # False: computed from an estimate (usage missing)
    attempt: int = 0
    key_id: str | None = None
    logical_model: str | None = None
    model: str | None = None
    deployment: str | None = None
    region: str | None = None
    size: str | None = None
    quality: str | None = None
    n: int = 1
    text_in_tokens: int = 0
    image_in_tokens: int = 0
    image_out_tokens: int = 0
    http_status: int | None = None
    error_code: str | None = None
    latency_ms: float | None = None
    idempotency_key: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CostRow:
    group: str
    requests: int  # rows: requests (attempts, by deployment), refused and failed ones included
    images: int  # images made (successful rows only)
    cost_usd: Decimal
    estimated: int  # rows whose cost is an estimate


class Ledger(Protocol):
    async def record(self, entry: LedgerEntry) -> None: ...

    async def record_many(self, entries: Sequence[LedgerEntry]) -> None:
        """Write every entry, all or none (one transaction in SQL). An empty sequence is a no-op.
        What the write-behind recorder calls once per flush: the per-row cost is the transaction."""
        ...

    async def summarize(
        self, by: CostGroup, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[CostRow]:
        """Totals per group. KEY/MODEL/DAY sum request rows; DEPLOYMENT sums attempt rows."""
        ...

    async def total(self, *, since: datetime, until: datetime | None = None) -> Decimal:
        """Sum of request costs in [since, until)."""
        ...

    async def entries(
        self, *, request_id: str | None = None, since: datetime | None = None
    ) -> list[LedgerEntry]: ...


# ---------------------------------------------------------------------------------------------
# idempotency


class ClaimStatus(enum.StrEnum):
    CLAIMED = "claimed"  # the caller owns the key now: run, then complete() or release()
    IN_PROGRESS = "in_progress"  # another request holds it
    DONE = "done"  # finished earlier: replay record.response_ref


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key_id: str
    idem_key: str
    fingerprint: str
    state: str  # "in_progress" | "done"
    created_at: datetime
    expires_at: datetime
    response_ref: str | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    status: ClaimStatus
    record: IdempotencyRecord


class IdempotencyStore(Protocol):
    async def claim(
        self, key_id: str, idem_key: str, fingerprint: str, now: datetime, *, lease_s: float
    ) -> IdempotencyClaim:
        """Atomically claim (or take over an expired entry). Raises Conflict on another fingerprint."""
        ...

    async def complete(
        self, key_id: str, idem_key: str, response_ref: str, now: datetime, *, ttl_s: float
    ) -> None: ...

    async def release(self, key_id: str, idem_key: str) -> None:
        """Forget an in-progress claim (the request failed; a retry may run again)."""
        ...

    async def get(self, key_id: str, idem_key: str) -> IdempotencyRecord | None: ...

    async def purge_expired(self, now: datetime) -> int: ...


# ---------------------------------------------------------------------------------------------
# audit


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what, when, with what outcome. ``prompt`` is set only when config says store it."""

    at: datetime
    actor_kind: str  # "key" | "admin" | "system"
    action: str  # "request" | "key.create" | "key.revoke" | "key.update" | "budget.set" ...
    outcome: str
    actor_id: str | None = None
    actor_name: str | None = None
    target: str | None = None
    request_id: str | None = None
    cost_usd: Decimal | None = None
    prompt: str | None = None
    prompt_sha256: str | None = None
    details: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    id: str = ""


class AuditLog(Protocol):
    async def record(self, event: AuditEvent) -> None: ...

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        """Append every event in order, all or none (one transaction in SQL); empty is a no-op."""
        ...

    def export(self, *, since: datetime | None = None) -> AsyncIterator[AuditEvent]: ...


# ---------------------------------------------------------------------------------------------
# rate limits and blobs


@runtime_checkable
class RateLimiter(Protocol):
    async def hit(self, key: str, per_minute: int) -> None:
        """Count one request; raise RateLimited(retry_after_s) when over ``per_minute``."""
        ...


@dataclass(frozen=True, slots=True)
class BlobRef:
    digest: str  # sha256 hex of the bytes
    size: int
    content_type: str


class BlobStore(Protocol):
    async def put(self, data: bytes, content_type: str) -> BlobRef: ...

    async def get(self, digest: str) -> bytes: ...

    def signed_url(self, ref: BlobRef, now: datetime, *, ttl_s: float) -> str: ...

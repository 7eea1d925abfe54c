"""Who may call, how often, for how much, and what it cost: the gateway's governance steps.

For each image request, in this order (each step short-circuits by raising from the tree)::

    authorize   virtual key → 401 (missing, unknown, revoked) / 403 (model, n, quality out of scope)
    rate        the key's rpm → 429 with retry-after
    reserve     hold the estimated cost on the key's budget → 429 insufficient_quota, naming it
    ── the library pipeline runs (validate, route, upstream attempts) ──
    settle      replace the hold by the actual cost (or release it: nothing was sent)
    record      one ledger row for the request, one per upstream attempt; one audit event
                (one ``record_many`` call each; over SQL the composition root puts a write-behind
                recorder, ``stores.writebehind``, behind these ports, so this only queues)

Everything talks to storage through ``imagegate.ports`` Protocols; the composition root picks
the adapters. With no key store the gateway runs *open* (zero-config on loopback only; see
``server.app``): every caller is ``anonymous`` and the steps that need a key are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from imagegate.config import DEFAULT_GROUP
from imagegate.errors import AuthenticationError, ImageGateError, UpstreamFailed
from imagegate.policy.budget import BudgetSpec
from imagegate.policy.keys import KeyRecord, RequestScope, active_key, authorize
from imagegate.ports import (
    AuditEvent,
    AuditLog,
    BudgetLedger,
    EntryKind,
    KeyStore,
    Ledger,
    LedgerEntry,
    RateLimiter,
    Reservation,
)
from imagegate.stores.audit import PromptRetention, with_prompt
from imagegate.types import AttemptRecord, ImageRequest, ImageResult

__all__ = [
    "ANONYMOUS",
    "CANCELLED",
    "REPLAYED",
    "UNDELIVERED",
    "Caller",
    "Governance",
    "Outcome",
    "credential_from",
]

log = logging.getLogger("imagegate.server")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request's ledger status and error code when no error object says it."""

    status: str
    code: str | None = None


CANCELLED = Outcome("cancelled", "cancelled")  # the client went away, or the gateway shut down
REPLAYED = Outcome("replayed", "replayed")  # an Idempotency-Key repeat answered from the stored response
# made and billed, but its response did not reach the client whole (a shutdown cut the send off)
UNDELIVERED = Outcome("cancelled", "undelivered")


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal of one request (never the key itself)."""

    key_id: str
    key_name: str
    rpm: int | None = None
    budgets: tuple[BudgetSpec, ...] = ()
    anonymous: bool = False
    models: tuple[str, ...] = ()  # the key's allowed models: fallbacks are limited to them (() = any)


ANONYMOUS = Caller(key_id="anonymous", key_name="anonymous", anonymous=True)


def credential_from(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: Azure's ``api-key`` header, else ``Authorization: Bearer``."""
    api_key = headers.get("api-key")
    if api_key:
        return api_key.strip() or None
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Governance:
    """The governance steps over storage ports. ``keys=None`` means open mode."""

    keys: KeyStore | None = None
    rates: RateLimiter | None = None
    budgets: BudgetLedger | None = None
    ledger: Ledger | None = None
    audit: AuditLog | None = None
    global_budgets: tuple[BudgetSpec, ...] = ()
    now: Callable[[], datetime] = field(default=_utcnow)
    default_model: str = DEFAULT_GROUP  # recorded as the logical model of requests naming none
    prompt_retention: PromptRetention = PromptRetention.HASH  # what the audit log keeps of a prompt

    @property
    def open(self) -> bool:
        return self.keys is None

    async def authorize(self, credential: str | None, scope: RequestScope) -> Caller:
        return await self.admit(await self.identify(credential), scope)

    async def identify(self, credential: str | None) -> KeyRecord | None:
        """The stored key ``credential`` is (revoked or not), ``None`` for an unknown one or in
        open mode; a missing credential is a 401 at once."""
        if self.keys is None:
            return None
        if not credential:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'api-key: <key>' or 'Authorization: Bearer <key>'."
            )
        return await self.keys.authenticate(credential)

    async def key_of(self, credential: str | None) -> KeyRecord | None:
        """The active key ``credential`` is, for a request that is not an image request (the
        model list): the same 401s as an image request's. ``None`` in open mode."""
        record = await self.identify(credential)
        return None if self.keys is None else active_key(record, self.now())

    async def admit(self, record: KeyRecord | None, scope: RequestScope) -> Caller:
        """The caller, if ``record`` may make this request now: 401 (unknown, revoked, expired),
        403 (out of scope)."""
        if self.keys is None:
            return ANONYMOUS
        auth = authorize(record, scope, self.now())
        budgets = (*((auth.budget,) if auth.budget else ()), *self.global_budgets)
        return Caller(
            key_id=auth.key_id, key_name=auth.key_name, rpm=auth.rpm, budgets=budgets, models=auth.models
        )

    async def rate(self, caller: Caller) -> None:
        if caller.rpm is not None and self.rates is not None:
            await self.rates.hit(f"key:{caller.key_id}", caller.rpm)

    async def reserve(self, caller: Caller, estimate_usd: Decimal) -> Reservation | None:
        if self.budgets is None or not caller.budgets:
            return None
        return await self.budgets.reserve(caller.budgets, estimate_usd, self.now())

    async def settle(self, hold: Reservation | None, actual_usd: Decimal | None) -> None:
        """``actual_usd=None``: nothing was billed, release the hold."""
        if hold is None or self.budgets is None:
            return
        if actual_usd is None:
            await self.budgets.release(hold.id, self.now())
        else:
            await self.budgets.settle(hold.id, actual_usd, self.now())

    async def record(
        self,
        *,
        caller: Caller | None,
        request: ImageRequest,
        request_id: str,
        started_at: datetime,
        result: ImageResult | None = None,
        error: ImageGateError | None = None,
        cost_usd: Decimal = Decimal(0),
        cost_exact: bool = False,
        idempotency_key: str | None = None,
        http_status: int = 200,
        outcome: Outcome | None = None,
    ) -> None:
        """Ledger rows (request + attempts) and one audit event. Failures here are logged, never
        turned into a failed response: the image was already made and billed. ``outcome``
        overrides the status and code derived from ``error`` (a cancelled request has no error)."""
        try:
            await self._record(
                caller, request, request_id, started_at, result, error, cost_usd, cost_exact,
                idempotency_key, http_status, outcome,
            )  # fmt: skip
        except Exception as exc:
            log.error("could not record request %s in the ledger/audit log", request_id, exc_info=exc)

    async def _record(
        self,
        caller: Caller | None,
        request: ImageRequest,
        request_id: str,
        started_at: datetime,
        result: ImageResult | None,
        error: ImageGateError | None,
        cost_usd: Decimal,
        cost_exact: bool,
        idempotency_key: str | None,
        http_status: int,
        outcome: Outcome | None,
    ) -> None:
        finished = self.now()
        logical_model = request.model or self.default_model
        if outcome is None:
            status = "ok" if error is None else ("error" if isinstance(error, UpstreamFailed) else "rejected")
            code = error.code if error else None
        else:
            status, code = outcome.status, outcome.code
        if self.ledger is not None:
            usage = result.usage if result else None
            rows = [
                LedgerEntry(
                    kind=EntryKind.REQUEST,
                    request_id=request_id,
                    started_at=started_at,
                    status=status,
                    cost_usd=cost_usd,
                    cost_exact=cost_exact,
                    key_id=caller.key_id if caller else None,
                    logical_model=logical_model,
                    model=result.model if result else None,
                    deployment=result.deployment if result else None,
                    region=result.region if result else None,
                    size=request.size,
                    quality=request.quality,
                    n=request.n,
                    text_in_tokens=usage.input_text_tokens if usage else 0,
                    image_in_tokens=usage.input_image_tokens if usage else 0,
                    image_out_tokens=(usage.output_image_tokens or usage.output_tokens) if usage else 0,
                    http_status=http_status,
                    error_code=code,
                    latency_ms=(finished - started_at).total_seconds() * 1000,
                    idempotency_key=idempotency_key,
                    finished_at=finished,
                )
            ]
            attempts = result.attempts if result else (error.attempts if error else ())
            ok = [a for a in attempts if a.outcome == "ok"]
            rows.extend(
                LedgerEntry(
                    kind=EntryKind.ATTEMPT,
                    request_id=request_id,
                    started_at=started_at,
                    status=attempt.outcome,
                    attempt=attempt.number,
                    # an attempt's own cost and images when the pipeline priced it; else the
                    # request's, on its one successful attempt
                    cost_usd=_attempt_cost(attempt, ok, cost_usd),
                    cost_exact=cost_exact if attempt.outcome == "ok" else not attempt.may_be_billed,
                    error_code=None if attempt.outcome == "ok" else attempt.outcome,
                    key_id=caller.key_id if caller else None,
                    logical_model=logical_model,
                    model=result.model if result else None,
                    deployment=attempt.deployment,
                    n=_attempt_images(attempt, ok, request.n),
                    http_status=attempt.status_code,
                    latency_ms=attempt.latency_s * 1000,
                    finished_at=finished,
                )
                for attempt in attempts
            )
            await self.ledger.record_many(rows)
        if self.audit is not None:
            event = AuditEvent(
                at=finished,
                actor_kind="unauthenticated"
                if caller is None
                else ("anonymous" if caller.anonymous else "key"),
                action=f"image.{request.operation}",
                outcome=code or status,
                actor_id=caller.key_id if caller else None,
                actor_name=caller.key_name if caller else None,
                target=logical_model,
                request_id=request_id,
                cost_usd=cost_usd,
                details={"n": request.n, "http_status": http_status},
            )
            await self.audit.record(with_prompt(event, request.prompt, self.prompt_retention))


def _attempt_cost(attempt: AttemptRecord, ok: list[AttemptRecord], request_cost: Decimal) -> Decimal:
    if attempt.outcome != "ok":
        return Decimal(0)
    if attempt.cost_usd is not None:
        return attempt.cost_usd
    return request_cost if len(ok) == 1 else request_cost / len(ok)


def _attempt_images(attempt: AttemptRecord, ok: list[AttemptRecord], requested: int) -> int:
    if attempt.outcome != "ok":
        return 0
    if attempt.images is not None:
        return attempt.images
    return requested if len(ok) == 1 else 0

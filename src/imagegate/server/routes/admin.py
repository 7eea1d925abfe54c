"""Admin API: create, list and revoke virtual keys, and routing's status per deployment.
Guarded by the admin key.

The admin key comes from ``IMAGEGATE_ADMIN_KEY`` (or the configuration); without one the admin
API answers 403 and says how to enable it. ``GET /admin/status`` is also served
in open mode (no admin key and no virtual key, which the gateway allows on loopback only), where
anyone may generate anyway. A key's plaintext is returned exactly once, by the
create call. Changes go through ``stores.admin.KeyAdmin`` (the same as ``imagegate keys``), which
writes each one to the audit log.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from imagegate.errors import AuthenticationError, PermissionDenied
from imagegate.policy.budget import Period
from imagegate.policy.keys import check_models
from imagegate.ports import KeyRecord, KeyScope
from imagegate.server.deployments import status_json
from imagegate.server.governance import credential_from
from imagegate.server.state import gateway_state
from imagegate.stores.admin import KeyAdmin

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"])


class NewKeyBody(BaseModel):
    """What a new virtual key may do. Omitted limits mean "no limit"."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    max_quality: Literal["low", "medium", "high", "standard", "hd"] | None = None
    max_n: int | None = Field(default=None, ge=1, le=10)
    rpm: int | None = Field(default=None, ge=1, le=100_000)
    budget_usd: Decimal | None = Field(default=None, ge=0, le=10_000_000, max_digits=18, decimal_places=9)
    budget_period: Literal["day", "week", "month", "total"] = "month"
    expires_at: datetime | None = None


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _record(record: KeyRecord) -> dict[str, Any]:
    scope = record.scope
    return {
        "id": record.id,
        "object": "api_key",
        "name": record.name,
        "prefix": record.prefix,
        "models": list(scope.models),
        "max_quality": scope.max_quality,
        "max_n": scope.max_n,
        "rpm": scope.rpm,
        "budget_usd": None if scope.budget_usd is None else format(scope.budget_usd, "f"),
        "budget_period": scope.budget_period.value,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def _check_admin_key(request: Request, admin_key: str | None) -> None:
    if admin_key is None:
        raise PermissionDenied("the admin API is disabled: start the gateway with IMAGEGATE_ADMIN_KEY set")
    given = credential_from(request.headers)
    if not given or not hmac.compare_digest(given.encode(), admin_key.encode()):
        raise AuthenticationError("the admin API needs the admin key (Authorization: Bearer <admin key>)")


async def _admin(request: Request) -> KeyAdmin:
    """Dependency: the caller holds the admin key; the key admin over the gateway's stores."""
    state = gateway_state(request)
    _check_admin_key(request, state.admin_key)
    gov = state.images.governance if state.images is not None else None
    if gov is None or gov.keys is None or gov.audit is None or gov.budgets is None or gov.ledger is None:
        raise PermissionDenied("this gateway has no key, audit, budget or ledger store")
    return KeyAdmin(gov.keys, gov.audit, gov.budgets, gov.ledger, clock=gov.now)


Admin = Annotated[KeyAdmin, Depends(_admin)]
ACTOR = "admin-api"


def _served(request: Request) -> tuple[str, ...]:
    """What a key's ``models`` may name: what ``GET /v1/models`` lists, and the default model
    (a request naming no model is judged on it)."""
    state = gateway_state(request)
    default = (state.images.default_model,) if state.images is not None else ()
    return (*(m.id for m in state.models()), *default)


@router.post("/keys", status_code=201, summary="Create a virtual key (its plaintext is shown once).")
async def create_key(body: NewKeyBody, admin: Admin, request: Request) -> Response:
    check_models(body.models, _served(request))
    scope = KeyScope(
        models=tuple(body.models),
        max_quality=body.max_quality,
        max_n=body.max_n,
        rpm=body.rpm,
        budget_usd=body.budget_usd,
        budget_period=Period(body.budget_period),
    )
    new = await admin.create(body.name, scope, actor=ACTOR, expires_at=body.expires_at)
    return _json({**_record(new.record), "key": new.plaintext}, status=201)


@router.get("/keys", summary="List virtual keys (never their plaintext), with budget use.")
async def list_keys(admin: Admin, include_revoked: bool = Query(default=False)) -> Response:
    data = []
    for view in await admin.list(include_revoked=include_revoked):
        row = _record(view.record)
        if view.usage is not None:
            row["budget_spent_usd"] = format(view.usage.spent_usd, "f")
            row["budget_remaining_usd"] = format(view.usage.remaining_usd, "f")
        data.append(row)
    return _json({"object": "list", "data": data})


@router.delete("/keys/{key_id}", summary="Revoke a virtual key by id or unique name (idempotent).")
async def revoke_key(key_id: str, admin: Admin) -> Response:
    return _json(_record(await admin.revoke(key_id, actor=ACTOR)))


@router.get("/status", summary="Routing's view of every deployment: breaker, quota headroom, latency, queue.")
async def deployment_status(request: Request) -> Response:
    state = gateway_state(request)
    gov = state.images.governance if state.images is not None else None
    open_mode = state.admin_key is None and gov is not None and gov.open
    if not open_mode:
        _check_admin_key(request, state.admin_key)
    if state.deployment_status is None:
        raise PermissionDenied("this gateway has no routing scheduler to report on")
    return _json(status_json(await state.deployment_status()))

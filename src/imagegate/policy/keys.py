"""Virtual API keys: how a key is hashed, and whether a key may make a request. Pure.

Hashing. A virtual key is ``ig-`` followed by 32 random bytes (urlsafe base64), i.e. 256 bits of
entropy. Slow password hashes (bcrypt, scrypt, argon2) exist to make guessing *low-entropy*
secrets expensive; nobody can enumerate 2**256 candidates however fast the hash is, so a fast
keyed hash is the right tool: HMAC-SHA256 with a server-side *pepper*. It is cheap enough to
compute on every request and deterministic, so the database finds the key with one indexed
equality lookup instead of scanning rows. The pepper (config secret, optional) means a leaked
database alone cannot even confirm a guessed key; without one configured a fixed
domain-separation constant is used and the scheme is still sound because of the key's entropy.

Authorisation. :func:`authorize` takes the stored key record and a small view of the request
and returns an :class:`Authorization` or raises ``AuthenticationError`` (401: no such key,
revoked, expired) or ``PermissionDenied`` (403: model, quality or n outside the key's scope),
with a message naming what is out of scope and what the key allows.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from imagegate.errors import AuthenticationError, InvalidRequest, PermissionDenied
from imagegate.policy.budget import BudgetSpec, Period

__all__ = [
    "DEFAULT_PEPPER",
    "KEY_PREFIX",
    "QUALITY_RANK",
    "Authorization",
    "KeyRecord",
    "KeyScope",
    "RequestScope",
    "active_key",
    "authorize",
    "check_models",
    "hash_key",
    "looks_like_key",
]

KEY_PREFIX = "ig-"
DEFAULT_PEPPER = b"imagegate/virtual-key/v1"

# Quality ladder shared by the gpt-image family (low/medium/high) and dall-e-3 (standard/hd).
# "auto" may render at the top quality, so a key capped below "high" must ask explicitly.
QUALITY_RANK: Mapping[str, int] = MappingProxyType(
    {"low": 0, "standard": 1, "medium": 1, "high": 2, "hd": 2, "auto": 2}
)


def hash_key(plaintext: str, pepper: bytes = DEFAULT_PEPPER) -> str:
    """HMAC-SHA256(pepper, key) as hex. See the module docstring for why this is enough."""
    return hmac.new(pepper or DEFAULT_PEPPER, plaintext.encode("utf-8"), hashlib.sha256).hexdigest()


def looks_like_key(plaintext: str) -> bool:
    return plaintext.startswith(KEY_PREFIX) and 20 <= len(plaintext) <= 200


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What a virtual key may do. Empty ``models`` means every logical model; ``None`` = no limit."""

    models: tuple[str, ...] = ()
    max_quality: str | None = None
    max_n: int | None = None
    rpm: int | None = None
    budget_usd: Decimal | None = None
    budget_period: Period = Period.MONTH


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored virtual key. Never holds the plaintext; ``secret_hash`` stays out of repr."""

    id: str
    name: str
    prefix: str  # first characters of the key, enough to recognise it, far too few to use it
    scope: KeyScope
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    secret_hash: str = field(default="", repr=False)

    def budget(self) -> BudgetSpec | None:
        """The key's own budget, named ``key:<id>`` in the budget ledger."""
        if self.scope.budget_usd is None:
            return None
        return BudgetSpec(
            name=f"key:{self.id}", limit_usd=self.scope.budget_usd, period=self.scope.budget_period
        )


@dataclass(frozen=True, slots=True)
class RequestScope:
    """The parts of a request a key's scope talks about."""

    logical_model: str
    n: int = 1
    quality: str | None = None  # what will be rendered: the request's, else the model's default
    quality_named: bool = True  # False: ``quality`` is the model's default, the request named none


@dataclass(frozen=True, slots=True)
class Authorization:
    key_id: str
    key_name: str
    rpm: int | None
    budget: BudgetSpec | None
    models: tuple[str, ...] = ()  # what the key may be served by (fallbacks included); () = any


def check_models(models: Sequence[str], served: Sequence[str], *, field: str = "models") -> None:
    """Refuse a key scope naming a model the gateway does not serve: a typo would be kept, and
    every request with the key refused (403) later. ``served``: the names a request may use
    (``ImageGateConfig.model_names``, and the default model a request naming none is judged on)."""
    unknown = [m for m in models if m not in served]
    if unknown:
        raise InvalidRequest.for_field(
            field,
            unknown[0] if len(unknown) == 1 else unknown,
            "one of the models this gateway serves (logical models, deployment names, catalog "
            "models): " + ", ".join(dict.fromkeys(served)),
        )


def _check_active(key: KeyRecord, now: datetime) -> None:
    if key.revoked_at is not None and key.revoked_at <= now:
        raise AuthenticationError(
            f"API key {key.prefix}… ({key.name}) was revoked at {key.revoked_at.isoformat()}"
        )
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthenticationError(
            f"API key {key.prefix}… ({key.name}) expired at {key.expires_at.isoformat()}"
        )


def active_key(key: KeyRecord | None, now: datetime) -> KeyRecord:
    """``key`` if it may be used at ``now``, whatever the request; else 401 (no such key, revoked,
    expired)."""
    if key is None:
        raise AuthenticationError("Incorrect API key provided: no such imagegate key")
    _check_active(key, now)
    return key


def authorize(
    key: KeyRecord | None,
    request: RequestScope,
    now: datetime,
    *,
    quality_rank: Mapping[str, int] = QUALITY_RANK,
) -> Authorization:
    """Decide whether ``key`` may make ``request`` at ``now``."""
    key = active_key(key, now)
    scope = key.scope
    who = f"API key {key.prefix}… ({key.name})"
    if scope.models and request.logical_model not in scope.models:
        raise PermissionDenied(
            f"{who} may not use model {request.logical_model!r}; it allows: {', '.join(scope.models)}"
        )
    if scope.max_n is not None and request.n > scope.max_n:
        raise PermissionDenied(
            f"{who} may request at most n={scope.max_n} images; the request asked for n={request.n}"
        )
    if scope.max_quality is not None and request.quality is not None:
        cap = quality_rank.get(scope.max_quality)
        asked = quality_rank.get(request.quality)
        if cap is None or asked is None or asked > cap:
            allowed = sorted(
                (q for q, r in quality_rank.items() if cap is not None and r <= cap and q != "auto")
            )
            if not request.quality_named:
                what = (
                    f"the request names no quality, and the model's default is {request.quality!r} "
                    "(ask for a quality explicitly)"
                )
            elif request.quality == "auto":
                what = (
                    "the request asked for 'auto' ('auto' may render at high quality; "
                    "ask for a quality explicitly)"
                )
            else:
                what = f"the request asked for {request.quality!r}"
            raise PermissionDenied(
                f"{who} may request quality up to {scope.max_quality!r} "
                f"({', '.join(allowed) or 'none'}); {what}"
            )
    return Authorization(
        key_id=key.id, key_name=key.name, rpm=scope.rpm, budget=key.budget(), models=scope.models
    )

"""``RequestContext``: what one request carries through the stages.

It is the one mutable object of a request: stages fill it in (candidates, the model spec, the
validated request, the plan) and read what earlier stages left. Everything on it is a value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from imagegate.catalog import ModelSpec
from imagegate.config import DeploymentConfig
from imagegate.ids import new_hex_id
from imagegate.policy.fallback import FallbackMode
from imagegate.types import Change, ImageRequest, PartialImage
from imagegate.upstream.client import AttemptHooks

__all__ = ["OnPartial", "RequestContext"]

OnPartial = Callable[[PartialImage], Awaitable[None]]


@dataclass(kw_only=True)
class RequestContext:
    request: ImageRequest
    translate: bool = False
    on_partial: OnPartial | None = None
    request_id: str = field(default_factory=new_hex_id)
    candidates: tuple[DeploymentConfig, ...] = ()
    spec: ModelSpec | None = None
    changes: tuple[Change, ...] = ()
    plan: tuple[DeploymentConfig, ...] = ()
    hooks: AttemptHooks | None = None  # set by routing: choose each attempt's deployment, hear outcomes
    notes: dict[str, object] = field(default_factory=dict)
    # the request as the caller gave it (fallback steps translate from it, not from the primary's)
    original: ImageRequest | None = None
    fallback: FallbackMode = "any"  # any | same-model | none (policy.fallback)
    fallback_models: frozenset[str] | None = None  # names a fallback may be reached by (None: any)
    deadline: float | None = None  # absolute, on the pipeline's clock; None: the config's deadline_s
    degrade: bool = False  # may the quality be lowered to meet the deadline?

    def __post_init__(self) -> None:
        if self.original is None:
            self.original = self.request

"""The one exception tree of imagegate.

Every failure a caller can see is one of these. Foreign exceptions (httpx, upstream JSON bodies)
are mapped into this tree in exactly one function, ``imagegate.upstream.classify``; the HTTP
gateway renders them in exactly one place, ``imagegate.server.errors``.

::

    ImageGateError                      code, http_status, message
    ├── ClientError                     4xx: the caller can fix it
    │   ├── InvalidRequest              400  field, value, allowed
    │   ├── ContentFiltered             400  categories, revised_prompt, stage (prompt|output|unknown)
    │   ├── AuthenticationError         401
    │   ├── PermissionDenied            403
    │   ├── NotFound                    404  (unknown model / deployment / job)
    │   ├── Conflict                    409  (idempotency key reused with another body)
    │   ├── RequestTimeout              408  the body stopped arriving
    │   ├── ResponseGone                410  (an idempotency key's stored answer is gone)
    │   ├── PayloadTooLarge             413
    │   ├── RateLimited                 429  retry_after_s
    │   └── BudgetExceeded              429  budget, limit_usd, remaining_usd
    ├── UpstreamError                   the deployment failed us
    │   ├── UpstreamNotSent             never reached Azure (connect refused, breaker open):
    │   │                               nothing was billed, safe to fail over
    │   ├── UpstreamRejected            502  401/403/404 from the deployment: our configuration
    │   │                               (key, Entra role, deployment name) is wrong; not billed
    │   └── UpstreamFailed              sent, then failed: may have been billed
    │       ├── UpstreamTimeout         504  read timeout after sending
    │       └── UpstreamStatusError     502  status_code, upstream_code (5xx, malformed body, ...)
    ├── NoDeploymentAvailable           503  every candidate open, exhausted or incapable
    ├── DeadlineExceeded                504  the request's deadline cannot be met (judged before
    │                                        sending, from observed latency) or has passed;
    │                                        needed_s, remaining_s, quality
    ├── StorageError                    503
    ├── ShuttingDown                    503  the gateway stopped the request: it is shutting down
    └── ConfigError                     raised at start-up only; lists every problem at once

Messages never contain secrets: keys are never passed to these constructors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BudgetExceeded",
    "ClientError",
    "ConfigError",
    "Conflict",
    "ContentFiltered",
    "DeadlineExceeded",
    "ImageGateError",
    "InvalidRequest",
    "NoDeploymentAvailable",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RequestTimeout",
    "ResponseGone",
    "ShuttingDown",
    "StorageError",
    "UpstreamError",
    "UpstreamFailed",
    "UpstreamNotSent",
    "UpstreamRejected",
    "UpstreamStatusError",
    "UpstreamTimeout",
]


class ImageGateError(Exception):
    """Base of every imagegate error. ``code`` is a stable machine-readable string."""

    code: ClassVar[str] = "imagegate_error"
    http_status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Set by the upstream attempt loop when it gives up: the AttemptRecords it made. Non-empty
        # means imagegate already retried, so callers should not retry on top (x-should-retry).
        self.attempts: tuple[Any, ...] = ()

    def details(self) -> dict[str, Any]:
        """Extra JSON-safe fields for rendering (never secrets)."""
        return {}


# ---------------------------------------------------------------------------------------------
# 4xx


class ClientError(ImageGateError):
    code = "invalid_request"
    http_status = 400
    error_type = "invalid_request_error"


class InvalidRequest(ClientError):
    """A parameter is wrong. Names the field, the value given and what is allowed."""

    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: object = None,
        allowed: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.allowed = allowed

    @classmethod
    def for_field(cls, field: str, value: object, allowed: str) -> InvalidRequest:
        shown = repr(value) if not isinstance(value, bytes) else f"<{len(value)} bytes>"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return cls(f"{field}={shown} is not allowed: {allowed}", field=field, value=value, allowed=allowed)

    def details(self) -> dict[str, Any]:
        return {"param": self.field}


class ContentFiltered(ClientError):
    """The content filter rejected the prompt or the output. Never retried with the same prompt."""

    code = "content_policy_violation"

    def __init__(
        self,
        message: str,
        *,
        categories: Sequence[str] = (),
        revised_prompt: str | None = None,
        stage: str = "unknown",
        upstream_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.categories = tuple(categories)
        self.revised_prompt = revised_prompt
        self.stage = stage
        self.upstream_code = upstream_code

    def details(self) -> dict[str, Any]:
        return {"categories": list(self.categories), "stage": self.stage}


class AuthenticationError(ClientError):
    code = "invalid_api_key"
    http_status = 401
    error_type = "authentication_error"


class PermissionDenied(ClientError):
    code = "permission_denied"
    http_status = 403
    error_type = "permission_error"


class NotFound(ClientError):
    code = "not_found"
    http_status = 404
    error_type = "invalid_request_error"


class Conflict(ClientError):
    code = "conflict"
    http_status = 409


class ResponseGone(ClientError):
    """The request already ran under its ``Idempotency-Key``, but the stored answer is gone, so it
    cannot be replayed. Final for the key: running the request again could bill it twice, and
    retrying cannot bring the answer back; a new ``Idempotency-Key`` runs it again."""

    code = "idempotency_response_gone"
    http_status = 410


class PayloadTooLarge(ClientError):
    code = "payload_too_large"
    http_status = 413

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the upload that is too large (``image[1]``, ``mask``), when one is

    def details(self) -> dict[str, Any]:
        return {"param": self.field} if self.field is not None else {}


class RequestTimeout(ClientError):
    """The client stopped sending its request body (nothing was done with the request)."""

    code = "request_timeout"
    http_status = 408


class RateLimited(ClientError):
    """Too many requests; ``retry_after_s`` is an honest estimate of when capacity returns."""

    code = "rate_limit_exceeded"
    http_status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BudgetExceeded(ClientError):
    code = "budget_exceeded"
    http_status = 429
    error_type = "insufficient_quota"

    def __init__(
        self,
        message: str,
        *,
        budget: str,
        limit_usd: str,
        remaining_usd: str,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.limit_usd = limit_usd
        self.remaining_usd = remaining_usd
        self.retry_after_s = retry_after_s

    def details(self) -> dict[str, Any]:
        return {"budget": self.budget, "limit_usd": self.limit_usd, "remaining_usd": self.remaining_usd}


# ---------------------------------------------------------------------------------------------
# upstream


class UpstreamError(ImageGateError):
    code = "upstream_error"
    http_status = 502

    def __init__(self, message: str, *, deployment: str | None = None) -> None:
        super().__init__(message)
        self.deployment = deployment


class UpstreamNotSent(UpstreamError):
    """The request never reached the deployment. Nothing was billed; safe to fail over."""

    code = "upstream_unreachable"
    http_status = 503


class UpstreamRejected(UpstreamError):
    """The deployment refused us before doing any work (401, 403, 404 DeploymentNotFound): a
    configuration problem on our side, not the caller's. Nothing was billed; another deployment
    may work."""

    code = "upstream_rejected"
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        upstream_code: str | None = None,
        deployment: str | None = None,
    ) -> None:
        super().__init__(message, deployment=deployment)
        self.status_code = status_code
        self.upstream_code = upstream_code


class UpstreamFailed(UpstreamError):
    """The request was sent and then failed. It may have been billed."""

    code = "upstream_failed"
    http_status = 502


class UpstreamTimeout(UpstreamFailed):
    code = "upstream_timeout"
    http_status = 504


class UpstreamStatusError(UpstreamFailed):
    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        upstream_code: str | None = None,
        deployment: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, deployment=deployment)
        self.status_code = status_code
        self.upstream_code = upstream_code
        self.retry_after_s = retry_after_s


class NoDeploymentAvailable(ImageGateError):
    code = "no_deployment_available"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ImageGateError):
    """The request's deadline (``deadline_s``) cannot be met: the time left is shorter than the
    expected latency of every model, quality and deployment the request may use (or it has already
    passed). Raised before sending, so nothing was billed for the attempt it refused. Retrying the
    same request with the same deadline will not help: give it more time, or allow
    ``degrade=True`` (a lower quality that fits)."""

    code = "deadline_exceeded"
    http_status = 504
    error_type = "timeout_error"

    def __init__(
        self,
        message: str,
        *,
        remaining_s: float,
        needed_s: float | None = None,
        quality: str | None = None,
    ) -> None:
        super().__init__(message)
        self.remaining_s = remaining_s
        self.needed_s = needed_s
        self.quality = quality

    def details(self) -> dict[str, Any]:
        return {
            "remaining_s": round(self.remaining_s, 3),
            "needed_s": None if self.needed_s is None else round(self.needed_s, 3),
            "quality": self.quality,
        }


class StorageError(ImageGateError):
    """A store (database, Redis) failed. ``message`` is what a client may read; ``detail`` says
    for operators' logs where and why (a URL without its password, the driver's one-line error);
    it is never rendered to clients."""

    code = "storage_error"
    http_status = 503

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class ShuttingDown(ImageGateError):
    """The gateway stopped a request it was running because it is shutting down (its graceful
    shutdown ran out of time). An upstream call may already have made, and billed, an image, so
    it is never worth an automatic retry (``x-should-retry: false``)."""

    code = "shutting_down"
    http_status = 503

    def __init__(
        self,
        message: str = (
            "The gateway was shutting down and stopped this request before it finished. An image "
            "may already have been generated and billed, so the request is not retried "
            "automatically: send it again if you still need it (with the same Idempotency-Key, a "
            "repeat is never billed twice)."
        ),
    ) -> None:
        super().__init__(message)


class ConfigError(ImageGateError):
    """Raised at start-up only. ``problems`` lists every problem found, not just the first."""

    code = "config_error"

    def __init__(self, problems: Sequence[str], *, source: str | None = None) -> None:
        self.problems = tuple(problems)
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s){where}:\n{lines}")
        self.source = source

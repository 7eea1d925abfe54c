"""imagegate: a reliable, cheap, governed gateway for Azure OpenAI image generation."""

from __future__ import annotations

from imagegate.errors import (
    AuthenticationError,
    BudgetExceeded,
    ClientError,
    ConfigError,
    Conflict,
    ContentFiltered,
    ImageGateError,
    InvalidRequest,
    NoDeploymentAvailable,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    StorageError,
    UpstreamError,
    UpstreamFailed,
    UpstreamNotSent,
    UpstreamRejected,
    UpstreamStatusError,
    UpstreamTimeout,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BudgetExceeded",
    "ClientError",
    "ConfigError",
    "Conflict",
    "ContentFiltered",
    "ImageGateError",
    "InvalidRequest",
    "NoDeploymentAvailable",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "StorageError",
    "UpstreamError",
    "UpstreamFailed",
    "UpstreamNotSent",
    "UpstreamRejected",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "__version__",
]

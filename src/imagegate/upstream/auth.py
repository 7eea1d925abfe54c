"""Credentials on the wire: an API key, or a Microsoft Entra ID token.

* Azure key: ``api-key: <key>``. OpenAI platform key: ``Authorization: Bearer <key>``.
* Entra ID: ``Authorization: Bearer <token>`` for scope
  ``https://cognitiveservices.azure.com/.default``, from an azure-identity credential. The token is
  cached and refreshed ``refresh_margin_s`` before it expires (one refresh at a time, under a lock),
  so a long image request never starts with a token about to lapse. azure-identity's sync
  credential is used (its async one needs aiohttp, which we do not ship); ``get_token`` then runs
  in a worker thread. Any object with ``get_token(*scopes)`` returning ``(token, expires_on)`` —
  sync or async — works, which is how tests plug in a fake credential.

Keys are revealed only here, at the moment a header is built; nothing logs headers.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import anyio.to_thread

from imagegate.config import ApiKeyAuth, DeploymentConfig, EntraAuth
from imagegate.errors import UpstreamNotSent

__all__ = [
    "AuthProvider",
    "CredentialFactory",
    "EntraTokenProvider",
    "KeyAuth",
    "auth_for",
    "default_credential",
]


class AuthProvider(Protocol):
    async def headers(self) -> Mapping[str, str]: ...


class KeyAuth:
    """A static key in ``api-key`` (Azure) or as a Bearer token (OpenAI platform)."""

    def __init__(self, auth: ApiKeyAuth, *, bearer: bool) -> None:
        self._auth = auth
        self._bearer = bearer

    async def headers(self) -> Mapping[str, str]:
        key = self._auth.key.reveal()
        return {"authorization": f"Bearer {key}"} if self._bearer else {"api-key": key}

    def __repr__(self) -> str:
        return f"KeyAuth(bearer={self._bearer})"


class EntraTokenProvider:
    """Caches an Entra token and refreshes it ``refresh_margin_s`` before ``expires_on``."""

    def __init__(
        self,
        credential: Any,
        *,
        scope: str,
        refresh_margin_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._margin = refresh_margin_s
        self._clock = clock
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = anyio.Lock()
        self.refreshes = 0

    async def _fetch(self) -> tuple[str, float]:
        get_token = self._credential.get_token
        if inspect.iscoroutinefunction(get_token):
            result = await get_token(self._scope)
        else:
            result = await anyio.to_thread.run_sync(get_token, self._scope)
        token, expires_on = result[0], result[1]
        return str(token), float(expires_on)

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_on - self._margin:
                try:
                    self._token, self._expires_on = await self._fetch()
                except Exception as exc:  # any credential failure means nothing was sent
                    raise UpstreamNotSent(f"could not get an Entra ID token: {type(exc).__name__}") from None
                self.refreshes += 1
            return self._token

    async def headers(self) -> Mapping[str, str]:
        return {"authorization": f"Bearer {await self.token()}"}

    def __repr__(self) -> str:
        return f"EntraTokenProvider(scope={self._scope!r})"


CredentialFactory = Callable[[EntraAuth], Any]


def default_credential(auth: EntraAuth) -> Any:
    """azure-identity's DefaultAzureCredential (managed identity, workload identity, env, CLI...)."""
    from azure.identity import DefaultAzureCredential

    kwargs: dict[str, Any] = {}
    if auth.client_id:
        kwargs["managed_identity_client_id"] = auth.client_id
    if auth.tenant_id:
        kwargs["additionally_allowed_tenants"] = [auth.tenant_id]
    return DefaultAzureCredential(**kwargs)


def auth_for(
    dep: DeploymentConfig,
    *,
    credential_factory: CredentialFactory = default_credential,
    clock: Callable[[], float] = time.time,
) -> AuthProvider:
    if isinstance(dep.auth, ApiKeyAuth):
        return KeyAuth(dep.auth, bearer=dep.kind == "openai")
    credential = credential_factory(dep.auth)
    return EntraTokenProvider(
        credential, scope=dep.auth.scope, refresh_margin_s=dep.auth.refresh_margin_s, clock=clock
    )

"""The one place storage failures become ``StorageError`` (503): database or Redis unreachable,
pool exhausted, a statement refused. Callers see a clear, secret-free message and a retryable
status instead of a driver exception and a 500; the original stays chained for the logs.

``maps_storage_errors`` decorates an adapter class: every public coroutine method and async
generator method is wrapped. Errors from our own tree (BudgetExceeded, Conflict, ...) pass
through untouched.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from imagegate.errors import ImageGateError, StorageError

__all__ = ["maps_storage_errors", "storage_error"]

C = TypeVar("C", bound=type)
_FOREIGN = (SQLAlchemyError, RedisError, OSError, TimeoutError)


def storage_error(backend: str, exc: BaseException) -> StorageError:
    cause = (
        type(exc.orig).__name__
        if isinstance(exc, DBAPIError) and exc.orig is not None
        else type(exc).__name__
    )
    return StorageError(f"{backend} is unavailable or refused the operation ({cause}); retry later")


def _wrap_coroutine(backend: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except ImageGateError:
            raise
        except _FOREIGN as exc:
            raise storage_error(backend, exc) from exc

    return wrapper


def _wrap_generator(backend: str, fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async for item in fn(*args, **kwargs):
                yield item
        except ImageGateError:
            raise
        except _FOREIGN as exc:
            raise storage_error(backend, exc) from exc

    return wrapper


def maps_storage_errors(backend: str) -> Callable[[C], C]:
    def decorate(cls: C) -> C:
        for name, member in list(vars(cls).items()):
            if name.startswith("_"):
                continue
            if inspect.isasyncgenfunction(member):
                setattr(cls, name, _wrap_generator(backend, member))
            elif inspect.iscoroutinefunction(member):
                setattr(cls, name, _wrap_coroutine(backend, member))
        return cls

    return decorate

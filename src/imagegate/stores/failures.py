"""The one place storage failures become ``StorageError`` (503): database or Redis unreachable,
pool exhausted, a statement refused. Callers see a clear, secret-free message and a retryable
status instead of a driver exception and a 500; the original stays chained for the logs.

``maps_storage_errors`` decorates an adapter class: every public coroutine method and async
generator method is wrapped. Errors from our own tree (BudgetExceeded, Conflict, ...) pass
through untouched.

A statement the database refuses because of the *data* (SQLSTATE class 22, data exception: a
NUL character in text, a value too long; class 23, a constraint) becomes :class:`RowRefused`, a
``StorageError`` like the rest for callers on the request path, which the ledger's write-behind
tells apart: retrying such a row can never succeed, so it is dropped and counted instead of
being retried as if the database were down (which would hold back every row queued after it).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError

from imagegate.errors import ImageGateError, StorageError

__all__ = ["RowRefused", "maps_storage_errors", "storage_error"]

C = TypeVar("C", bound=type)
_FOREIGN = (SQLAlchemyError, RedisError, OSError, TimeoutError)
_REFUSED_SQLSTATE_CLASSES = ("22", "23")  # data exception, integrity constraint violation


class RowRefused(StorageError):
    """The database is up but refused the statement's data; the same rows will be refused again."""


def _refused(exc: BaseException) -> bool:
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):  # asyncpg errors reach SQLAlchemy as a generic DBAPIError
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in _REFUSED_SQLSTATE_CLASSES
    return False


def storage_error(backend: str, exc: BaseException) -> StorageError:
    cause = (
        type(exc.orig).__name__
        if isinstance(exc, DBAPIError) and exc.orig is not None
        else type(exc).__name__
    )
    if _refused(exc):
        return RowRefused(f"{backend} refused the data ({cause})")
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

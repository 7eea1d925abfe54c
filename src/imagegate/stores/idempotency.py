"""Idempotency driver: the one caller that runs a request, everyone else waits and replays.

``IdempotencyGate.begin`` claims ``(key id, Idempotency-Key)`` in the store. The winner gets a
ticket with ``owner=True``, runs the request, and calls ``complete`` (with a reference to the
stored response) or ``release`` (it failed: nothing to replay, a retry may run again). Every
other request with the same key and body waits — woken at once by an in-process
``asyncio.Event`` when the owner is in the same process, and by polling the store (with the
injected ``sleep``) when it is another replica — and then replays the stored response. So a
retrying client never starts a second billed generation. A different body under the same key is
a ``Conflict`` (409) at once; an owner that died is replaced only after its lease, which must
outlast the longest request (the retry deadline is 900 s by default); waiting longer than
``wait_timeout_s`` is a ``Conflict`` telling the client the first request is still running and to
retry later.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from imagegate.errors import Conflict
from imagegate.ports import ClaimStatus, IdempotencyRecord, IdempotencyStore

__all__ = ["IdempotencyGate", "IdempotencyTicket", "request_fingerprint"]


def request_fingerprint(method: str, path: str, parts: Iterable[bytes]) -> str:
    """SHA-256 over the method, the path and the request body parts (in order)."""
    h = hashlib.sha256(f"{method.upper()} {path}\n".encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class IdempotencyTicket:
    key_id: str
    idem_key: str
    owner: bool  # True: run the request, then complete() or release()
    replay: IdempotencyRecord | None = None  # set when owner is False: the finished response


class IdempotencyGate:
    def __init__(
        self,
        store: IdempotencyStore,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        lease_s: float = 3600.0,  # must outlast the longest request (deadline 900 s by default)
        ttl_s: float = 24 * 3600.0,
        poll_interval_s: float = 0.25,
        wait_timeout_s: float = 120.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self.lease_s = lease_s
        self.ttl_s = ttl_s
        self.poll_interval_s = poll_interval_s
        self.wait_timeout_s = wait_timeout_s
        self._events: dict[tuple[str, str], asyncio.Event] = {}

    async def begin(self, key_id: str, idem_key: str, fingerprint: str) -> IdempotencyTicket:
        deadline = self._clock() + timedelta(seconds=self.wait_timeout_s)
        key = (key_id, idem_key)
        while True:
            # Register before asking the store, so a completion that lands between our read and
            # our wait still wakes us (no lost wake-up).
            event = self._events.setdefault(key, asyncio.Event())
            try:
                claim = await self._store.claim(
                    key_id, idem_key, fingerprint, self._clock(), lease_s=self.lease_s
                )
            except BaseException:
                self._wake(key)
                raise
            if claim.status is ClaimStatus.CLAIMED:
                return IdempotencyTicket(key_id, idem_key, owner=True)
            if claim.status is ClaimStatus.DONE:
                self._wake(key)
                return IdempotencyTicket(key_id, idem_key, owner=False, replay=claim.record)
            if self._clock() >= deadline:
                raise Conflict(
                    f"a request with Idempotency-Key {idem_key!r} is still in progress after "
                    f"{self.wait_timeout_s:g}s; retry later to receive its result"
                )
            await self._wait(event)

    async def complete(self, ticket: IdempotencyTicket, response_ref: str) -> None:
        await self._store.complete(
            ticket.key_id, ticket.idem_key, response_ref, self._clock(), ttl_s=self.ttl_s
        )
        self._wake((ticket.key_id, ticket.idem_key))

    async def release(self, ticket: IdempotencyTicket) -> None:
        await self._store.release(ticket.key_id, ticket.idem_key)
        self._wake((ticket.key_id, ticket.idem_key))

    def _wake(self, key: tuple[str, str]) -> None:
        """Wake everyone waiting on ``key``; they ask the store again."""
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    async def _wait(self, event: asyncio.Event) -> None:
        """Until the local owner finishes or one poll interval passes, whichever is first."""
        woken = asyncio.ensure_future(event.wait())
        slept = asyncio.ensure_future(self._sleep(self.poll_interval_s))
        try:
            await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (woken, slept):
                task.cancel()

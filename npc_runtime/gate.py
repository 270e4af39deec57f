"""A fair, bounded waiting line for an engine that serves one (or a few) requests at a time.

``async with gate.slot():`` waits its turn (first come, first served: ``asyncio.Semaphore`` wakes
waiters in order); when ``max_waiting`` requests are already waiting it raises
:class:`~npc_runtime.errors.BusyError` at once, so an overloaded server answers ``busy`` instead of
letting turns pile up for minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from npc_runtime.errors import BusyError


class Gate:
    def __init__(self, name: str, *, limit: int = 1, max_waiting: int = 8) -> None:
        self.name, self.limit, self.max_waiting = name, limit, max_waiting
        self._semaphore = asyncio.Semaphore(limit)
        self.waiting = 0

    @property
    def busy(self) -> bool:
        """Every slot is taken (or someone already waits for one)."""
        return self._semaphore.locked() or self.waiting > 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._semaphore.locked() and self.waiting >= self.max_waiting:
            raise BusyError(f"the {self.name} is busy ({self.waiting} requests waiting); retry shortly")
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()

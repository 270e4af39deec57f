"""Per-turn timestamps on a monotonic clock (injectable for tests). Pure, no asyncio."""

from __future__ import annotations

import time
from collections.abc import Callable


class Timeline:
    """Marks named moments of one turn; reports them as ms offsets from the start.

    The first mark of a name wins (``first_token`` stays the first token's time).
    """

    __slots__ = ("_clock", "_start", "_marks")

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, start: float | None = None) -> None:
        self._clock = clock
        self._start = clock() if start is None else start
        self._marks: dict[str, float] = {}

    def mark(self, name: str, at: float | None = None) -> None:
        """Mark ``name`` now (or at clock time ``at``, for a moment measured elsewhere)."""
        self._marks.setdefault(name, self._clock() if at is None else at)

    def has(self, name: str) -> bool:
        return name in self._marks

    def elapsed_ms(self) -> float:
        return (self._clock() - self._start) * 1000.0

    def as_ms(self) -> dict[str, float]:
        return {k: round((v - self._start) * 1000.0, 1) for k, v in self._marks.items()}

"""The values memory stores and returns, and the summarizer interface. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

#: The kinds of remembered line: the partner spoke, the character spoke (with its action tags), an event happened.
KINDS: tuple[str, ...] = ("player", "character", "event")


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """One remembered line. ``at`` is unix time; 0.0 means "stamp it when stored"."""

    kind: Literal["player", "character", "event"]
    text: str
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Recall:
    """What a character remembers of a partner."""

    summary: str  #: "" when nothing is older than the recent entries
    recent: tuple[MemoryEntry, ...]  #: oldest first, at most ``keep_recent``
    total: int  #: every entry stored for the pair (folded ones included)


class Summarizer(Protocol):
    """Fold ``entries`` (oldest first) into the ``previous`` summary; return the new summary.

    Called by :meth:`MemoryStore.append` on the event loop: an implementation that does heavy
    work runs it in its own thread (or engine). If it raises, the store keeps the old summary
    and folds the same entries again at the next append."""

    async def __call__(self, previous: str, entries: Sequence[MemoryEntry], *,
                       character_name: str, partner_name: str) -> str: ...

"""What one character remembers of the player: read at the start (as facts, never as lines to copy), and the
conversation written back as it settles, in order, off the event loop. A memory that cannot be read or written
is said (``memory_unavailable``, retryable) and never ends the conversation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from npc_runtime import protocol as p
from npc_runtime.dialogue.prompt import HistoryEntry
from npc_runtime.errors import NpcError
from npc_runtime.memory import MemoryEntry, remembered
from npc_runtime.session.services import Services

log = structlog.get_logger(__name__)


class Remembering:
    """The memory link of one (player, character) pair; off when there is no store or the player is anonymous."""

    def __init__(self, services: Services, emit: Callable[[p.ErrorEvent], Awaitable[None]], *, player: p.Player,
                 character_id: str, character_name: str, session_id: str) -> None:
        self.services, self._emit = services, emit
        self.player, self.character_id, self.character_name, self._session_id = player, character_id, character_name, session_id
        #: What was remembered, as facts for the prompt ("" when nothing).
        self.summary = ""
        #: Why the memory could not be read at the start (its error code), if it could not.
        self.recall_failed: str | None = None
        self._written = 0  # history entries already written
        self._task: asyncio.Task[None] | None = None

    @property
    def on(self) -> bool:
        return self.services.memory is not None and self.player.id is not None  # an anonymous player: no one remembers

    async def recall(self) -> None:
        """Load what this character remembers of this player (a failure only means starting fresh)."""
        memory = self.services.memory
        if memory is None or self.player.id is None:
            return
        try:
            recall = await memory.recall(self.player.id, self.character_id)
        except NpcError as exc:
            log.warning("memory unavailable; starting fresh", code=exc.code)
            self.recall_failed = exc.code
            return
        # facts only: a returning player's earlier turns never come back as the character's lines to copy
        self.summary = remembered(recall, partner_name=self.player.name or self.player.id)
        if recall.total:
            log.info("remembered", entries=recall.total, recent=len(recall.recent), summary_chars=len(recall.summary))

    def write(self, history: Sequence[HistoryEntry], *, hold: HistoryEntry | None = None) -> bool:
        """Write the history entries not written yet, in order, off the event loop; ``hold`` (the last reply,
        while a barge-in may still cut it) stays out when it is the last entry. True when ``hold`` was written."""
        if not self.on:
            return False
        end = len(history)
        if hold is not None and end and history[-1] is hold:
            end -= 1
        settled = history[self._written:end]
        wrote_hold = hold is not None and any(h is hold for h in settled)
        self._written = max(self._written, end)
        if settled:
            entries = [MemoryEntry(h.kind, h.text, time.time()) for h in settled]
            assert self.player.id is not None
            self._task = asyncio.create_task(self._append(self._task, self.player.id, entries), name=f"memory-{self._session_id}")
        return wrote_hold

    async def _append(self, previous: asyncio.Task[None] | None, partner: str, entries: list[MemoryEntry]) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        memory, metrics = self.services.memory, self.services.metrics
        assert memory is not None
        try:
            await memory.append(partner, self.character_id, entries, partner_name=self.player.name or partner,
                                character_name=self.character_name)
        except NpcError as exc:
            # the store retried and keeps the entries pending (written before the next write): say so, go on
            log.warning("memory write failed; entries kept for the next write", code=exc.code, entries=len(entries),
                        pending=memory.pending)
            if metrics is not None:
                metrics.memory_write_failures.inc()
            await self._emit(p.ErrorEvent(
                code="memory_unavailable", retryable=True,
                message=f"this conversation could not be saved to memory ({exc.code}); {memory.pending} lines are kept "
                        "and written with the next one",
            ))
        finally:
            if metrics is not None:
                metrics.memory_pending.set(memory.pending)

    async def wait(self) -> None:
        """Wait for the writes under way (each says its own failure)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

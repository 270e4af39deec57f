"""What every memory backend shares: the interface a session uses, and the behaviour that must not differ.

:class:`Memory` holds the parts that are the same whatever the database: entries kept *pending* (in order, at
most ``max_pending``) while writes fail, each write tried ``write_attempts`` times with a doubling delay, the write
that runs to its end even if its caller is cancelled, the per-pair lock around folding old entries into the
summary, and what :meth:`Memory.aclose` does with entries still pending. A backend supplies the database side:
opening and closing it, inserting rows, reading what to fold and saving a summary, and the reads
(:meth:`recall`, :meth:`history`, :meth:`partners`) and :meth:`forget`.

Backends: :class:`npc_runtime.memory.store.MemoryStore` (SQLite, one file, the default) and
:class:`npc_runtime.memory.postgres.PostgresMemoryStore` (PostgreSQL, shared by several servers). Their tests are
the same tests (tests/test_memory.py runs each against both).

Errors, the same on both: a database that cannot be opened or reached is ``NpcError`` ``memory_unavailable``;
one that answers with an error is ``memory_failed``. Both are retried and, after the last attempt, raised from
:meth:`append` with the entries kept pending (a session tells its client ``memory_unavailable``, retryable).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import structlog

from npc_runtime.errors import NpcError
from npc_runtime.memory.records import KINDS, MemoryEntry, Recall, Summarizer
from npc_runtime.memory.summary import ExtractiveSummarizer

log = structlog.get_logger(__name__)

#: A row to insert: (partner, character, kind, text, at).
Row = tuple[str, str, str, str, float]


def memory_unavailable(message: str) -> NpcError:
    return NpcError(message, code="memory_unavailable")


def memory_failed(message: str) -> NpcError:
    return NpcError(message, code="memory_failed")


@dataclass(frozen=True, slots=True)
class Fold:
    """Entries to fold into a pair's summary, read together."""

    previous: str
    upto_id: int  # the summary's upto_id when read (0: no summary yet)
    ids: tuple[int, ...]
    entries: tuple[MemoryEntry, ...]


@dataclass(slots=True)
class _PairLock:
    lock: asyncio.Lock
    users: int = 0


class Memory(abc.ABC):
    """Conversation memory per (partner, character): ``open()`` before use, ``aclose()`` after.

    ``clock`` stamps entries whose ``at`` is 0. ``keep_recent``: entries recalled verbatim; older ones are folded
    into the summary by ``summarizer``."""

    def __init__(self, *, keep_recent: int = 16, summarizer: Summarizer | None = None,
                 clock: Callable[[], float] = time.time, write_attempts: int = 3, retry_delay_s: float = 0.1,
                 max_pending: int = 1000) -> None:
        if keep_recent < 1:
            raise ValueError("keep_recent must be at least 1")
        if write_attempts < 1 or max_pending < 1:
            raise ValueError("write_attempts and max_pending must be at least 1")
        self.keep_recent = keep_recent
        self.summarizer: Summarizer = summarizer if summarizer is not None else ExtractiveSummarizer()
        self._clock = clock
        self.write_attempts, self.retry_delay_s, self.max_pending = write_attempts, retry_delay_s, max_pending
        self._locks: dict[tuple[str, str], _PairLock] = {}
        #: Rows not yet written (a failed write), oldest first; changed on the loop only.
        self._pending: list[Row] = []
        self._write_lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()
        #: Entries dropped because more than ``max_pending`` were waiting (cumulative).
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Entries whose write failed, waiting to be written with the next append."""
        return len(self._pending)

    # -- what a backend supplies

    @abc.abstractmethod
    async def open(self) -> None:
        """Open (create, with the schema) the database; ``memory_unavailable`` when it cannot be used."""

    @abc.abstractmethod
    async def _close_db(self) -> None:
        """Close the database (after the last try at the pending rows)."""

    @property
    @abc.abstractmethod
    def _usable(self) -> bool:
        """Open and not closed: trying a write again can help."""

    @abc.abstractmethod
    async def _insert(self, rows: list[Row]) -> None:
        """Insert ``rows`` in order, in one transaction."""

    @abc.abstractmethod
    async def _to_fold(self, partner: str, character: str) -> Fold | None:
        """The pair's entries beyond the newest ``keep_recent`` not yet in its summary (None: none)."""

    @abc.abstractmethod
    async def _save_summary(self, partner: str, character: str, fold: Fold, summary: str) -> None:
        """Save ``summary`` as covering ``fold``, unless the pair was forgotten or folded meanwhile."""

    @abc.abstractmethod
    async def forget(self, partner: str, character: str | None = None) -> int:
        """Delete the partner's entries and summaries (with ``character`` only, when given);
        return the rows deleted (entries + summaries)."""

    @abc.abstractmethod
    async def recall(self, partner: str, character: str) -> Recall:
        """The summary, the entries after it (at most ``keep_recent``, oldest first), and the count."""

    @abc.abstractmethod
    async def history(self, partner: str, character: str) -> tuple[MemoryEntry, ...]:
        """Every entry stored for the pair, folded ones included, oldest first."""

    @abc.abstractmethod
    async def partners(self, character: str | None = None, *, partner: str | None = None) -> list[tuple[str, str, int]]:
        """``(partner, character, entries)`` for every pair with entries, sorted; only
        ``character``'s and/or ``partner``'s pairs when given."""

    # -- lifecycle

    async def aclose(self) -> None:
        """Let queued database work finish, try the pending entries once more (logging any that are
        lost), then close the database."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._pending and self._usable:
            try:
                await self._flush_now()
            except NpcError as exc:
                log.error("memory entries lost: the database failed until the store closed", entries=len(self._pending),
                          code=exc.code, error=exc.message)
        await self._close_db()

    # -- writing

    async def append(self, partner: str, character: str, entries: Sequence[MemoryEntry], *,
                     partner_name: str | None = None, character_name: str | None = None) -> None:
        """Store ``entries`` (in order, after any pending ones) for the pair, then fold what is beyond
        ``keep_recent`` into the summary. The names given to the summarizer default to the ids.

        A failed write is retried; if it still fails the entries stay pending (written before the next
        append's) and the error is raised: ``memory_failed`` or ``memory_unavailable``. Once this
        coroutine has started, the write runs to its end even if it is cancelled; a cancelled or failed
        fold is redone at the next append (a fold that fails is logged, not raised: the entries are stored)."""
        for entry in entries:
            if entry.kind not in KINDS:
                raise ValueError(f"unknown memory entry kind {entry.kind!r}")
        now = self._clock()
        rows = [(partner, character, e.kind, e.text, e.at or now) for e in entries]
        if rows or self._pending:
            self._pending.extend(rows)
            task = asyncio.create_task(self._flush(), name="memory-write")  # owns the write: not cancelled with us
            self._flushes.add(task)
            task.add_done_callback(_forget_flush(self._flushes))
            await asyncio.shield(task)
        async with self._pair_lock((partner, character)):
            try:
                await self._fold(partner, character, partner_name or partner, character_name or character)
            except NpcError as exc:
                log.warning("memory summary not updated; folded at the next append", code=exc.code, error=exc.message,
                            character=character)

    async def _flush(self) -> None:
        """Write every pending row (one transaction), retrying; raise the last error if it never works."""
        async with self._write_lock:
            last: NpcError | None = None
            for attempt in range(self.write_attempts):
                if not self._pending:
                    return
                if attempt:
                    await asyncio.sleep(self.retry_delay_s * 2 ** (attempt - 1))
                try:
                    await self._flush_now()
                    return
                except NpcError as exc:
                    last = exc
                    log.warning("memory write failed", attempt=attempt + 1, of=self.write_attempts, entries=len(self._pending),
                                code=exc.code, error=exc.message)
                    if not self._usable:
                        break  # closed: trying again cannot help
            assert last is not None
            raise last

    async def _flush_now(self) -> None:
        """One try at writing the pending rows (the caller holds the write lock, or nothing else writes)."""
        overflow = len(self._pending) - self.max_pending
        if overflow > 0:
            del self._pending[:overflow]
            self.dropped += overflow
            log.error("memory entries dropped: too many waiting for the database", dropped=overflow, kept=self.max_pending)
        batch = list(self._pending)

        def written(job: asyncio.Future[None]) -> None:
            if not job.cancelled() and job.exception() is None:
                del self._pending[: len(batch)]  # rows added meanwhile (at the end) stay for the next write

        job = asyncio.ensure_future(self._insert(batch))
        job.add_done_callback(written)  # also when we are cancelled: the insert runs to its end
        await asyncio.shield(job)

    async def _fold(self, partner: str, character: str, partner_name: str, character_name: str) -> None:
        fold = await self._to_fold(partner, character)
        if fold is None:
            return
        try:
            summary = await self.summarizer(fold.previous, fold.entries, character_name=character_name,
                                            partner_name=partner_name)
            if not isinstance(summary, str):
                raise TypeError("the summarizer returned no string")
        except Exception as exc:  # noqa: BLE001 - memory never fails a turn
            log.warning("memory summarizer failed; old summary kept", error=type(exc).__name__,
                        character=character, entries=len(fold.entries))
            return
        await self._save_summary(partner, character, fold, summary.strip())

    @contextlib.asynccontextmanager
    async def _pair_lock(self, key: tuple[str, str]) -> AsyncIterator[None]:
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = _PairLock(asyncio.Lock())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[key]


def _forget_flush(flushes: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        flushes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here: an append cancelled while it ran no longer awaits it

    return done

"""The SQLite store: one connection, owned by one :class:`EngineThread` ("memory").

Schema (version 1, in ``meta``)::

    entries(id INTEGER PRIMARY KEY, partner, character, kind, text, at)   index (partner, character, id)
    summaries(partner, character, summary, upto_id)                       primary key (partner, character)
    meta(key, value)                                                       schema_version = 1

A pair's summary covers its entries up to ``upto_id``; those stay in ``entries`` (``npc memory
show`` can list them) but :meth:`MemoryStore.recall` returns only the later ones, at most
``keep_recent``. The database runs in WAL mode. Every sqlite3 call runs in the store's thread;
the summarizer is awaited on the loop between two thread calls, under a per-pair lock, so two
appends for one pair never fold the same entries twice.

Errors: a path that cannot be opened as a SQLite database is ``NpcError`` ``memory_unavailable``
(the message names the path); a later database failure is ``memory_failed``. A failing summarizer
is logged and never raised: memory must not fail a turn.

Nothing is dropped without a word:

* a write is tried ``write_attempts`` times (``retry_delay_s``, doubling, between tries). Entries
  that still could not be written stay *pending* (in order, all pairs, at most ``max_pending``: past
  that the oldest are dropped with an error log) and go into the database before the next append's
  own, and :meth:`MemoryStore.append` raises (the caller tells its client); :meth:`MemoryStore.aclose`
  tries them once more and logs what is lost;
* before every database call the file at ``path`` is compared (device and inode) with the one the
  connection has open: a database deleted or replaced under a running server is noticed, the old
  connection is closed and the file at the path is opened (created, with the schema) again, with a
  warning, so that what is written next is what a restart finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from npc_runtime.engine_thread import EngineThread
from npc_runtime.errors import NpcError
from npc_runtime.memory.records import KINDS, MemoryEntry, Recall, Summarizer
from npc_runtime.memory.summary import ExtractiveSummarizer

log = structlog.get_logger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries(
    id INTEGER PRIMARY KEY, partner TEXT NOT NULL, character TEXT NOT NULL,
    kind TEXT NOT NULL, text TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS entries_pair ON entries(partner, character, id);
CREATE TABLE IF NOT EXISTS summaries(
    partner TEXT NOT NULL, character TEXT NOT NULL, summary TEXT NOT NULL, upto_id INTEGER NOT NULL,
    PRIMARY KEY(partner, character));
"""


def memory_unavailable(message: str) -> NpcError:
    return NpcError(message, code="memory_unavailable")


def memory_failed(message: str) -> NpcError:
    return NpcError(message, code="memory_failed")


@dataclass(frozen=True, slots=True)
class _Fold:
    """Entries to fold into a pair's summary, read in one thread call."""

    previous: str
    upto_id: int  # the summary's upto_id when read (0: no summary yet)
    ids: tuple[int, ...]
    entries: tuple[MemoryEntry, ...]


@dataclass(slots=True)
class _PairLock:
    lock: asyncio.Lock
    users: int = 0


class MemoryStore:
    """Conversation memory in one SQLite file (see the module docstring).

    ``open()`` before use, ``aclose()`` after. ``clock`` stamps entries whose ``at`` is 0."""

    def __init__(self, path: Path, *, keep_recent: int = 16, summarizer: Summarizer | None = None,
                 clock: Callable[[], float] = time.time, write_attempts: int = 3, retry_delay_s: float = 0.1,
                 max_pending: int = 1000, busy_timeout_s: float = 5.0) -> None:
        if keep_recent < 1:
            raise ValueError("keep_recent must be at least 1")
        if write_attempts < 1 or max_pending < 1:
            raise ValueError("write_attempts and max_pending must be at least 1")
        self.path = Path(path)
        self.keep_recent = keep_recent
        self.summarizer: Summarizer = summarizer if summarizer is not None else ExtractiveSummarizer()
        self._clock = clock
        self.write_attempts, self.retry_delay_s, self.max_pending = write_attempts, retry_delay_s, max_pending
        self.busy_timeout_s = busy_timeout_s
        self._thread = EngineThread("memory", closed_error=memory_unavailable, failure=memory_failed)
        self._conn: sqlite3.Connection | None = None  # used in the thread only
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file _conn has open
        self._sidecars: dict[Path, tuple[int, int] | None] = {}  # its -wal and -shm files, the same way
        self._is_open = False  # open() succeeded and aclose() has not run: reopen the file if it goes away
        self._locks: dict[tuple[str, str], _PairLock] = {}
        #: Rows not yet written (a failed write), oldest first; changed on the loop only.
        self._pending: list[tuple[str, str, str, str, float]] = []
        self._write_lock = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()
        #: Entries dropped because more than ``max_pending`` were waiting (cumulative).
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Entries whose write failed, waiting to be written with the next append."""
        return len(self._pending)

    # -- lifecycle

    async def open(self) -> None:
        """Create the parent directory and the schema. Raises ``memory_unavailable`` when the
        path is not a usable SQLite database (not one, unreadable, a newer schema)."""
        await self._thread.call(self._open)

    async def aclose(self) -> None:
        """Let queued database work finish, try the pending entries once more (logging any that are
        lost), then close the connection and end the thread."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._pending and self._is_open and not self._thread.closed:
            try:
                await self._flush_now()
            except NpcError as exc:
                log.error("memory entries lost: the database failed until the store closed", entries=len(self._pending),
                          code=exc.code, error=exc.message)
        await self._thread.aclose(self._close)

    def _open(self) -> None:
        if self._conn is not None:
            return
        self._connect()
        self._is_open = True

    def _connect(self) -> None:
        """Open (create) the database at ``path`` with the schema; remember which file it is."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise memory_unavailable(f"{self.path}: cannot create its directory ({exc.strerror})") from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            with conn:
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise memory_unavailable(f"{self.path}: not a usable SQLite database ({exc})") from exc
        if str(version) != str(SCHEMA_VERSION):
            conn.close()
            raise memory_unavailable(f"{self.path}: memory schema version {version}, this runtime reads {SCHEMA_VERSION}")
        self._conn, self._ident = conn, _identity(self.path)
        self._sidecars = {p: _identity(p) for p in _sidecars(self.path)}

    def _close(self) -> None:
        self._is_open = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        """The open connection, to the file that is at ``path`` now: a database deleted or replaced
        since it was opened is noticed here (thread side) and the file at the path opened instead."""
        if not self._is_open:
            raise memory_unavailable(f"{self.path}: the memory store is not open")
        ident = _identity(self.path)
        if self._conn is not None and ident is not None and ident == self._ident:
            return self._conn
        if self._conn is not None:
            log.warning("memory database deleted or replaced under the running server; opening the file at its path again",
                        path=str(self.path), what="deleted" if ident is None else "replaced")
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn, self._ident = None, None
            # SQLite leaves the WAL of a moved database where it was: the database now at the path must not
            # read it (it would see the old pages). Remove our own -wal and -shm, never another file's.
            for sidecar, ident in self._sidecars.items():
                if ident is not None and _identity(sidecar) == ident:
                    with contextlib.suppress(OSError):
                        sidecar.unlink()
            self._sidecars = {}
        self._connect()
        assert self._conn is not None
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the thread, sqlite3 errors made ``memory_failed``."""

        def work() -> T:
            conn = self._connection()
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise memory_failed(f"{self.path}: {type(exc).__name__}: {exc}") from exc

        result: T = await self._thread.call(work)
        return result

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
                    if self._thread.closed or not self._is_open:
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

        job = asyncio.ensure_future(self._run(lambda conn: _insert(conn, batch)))
        job.add_done_callback(written)  # also when we are cancelled: the insert finishes in the thread
        await asyncio.shield(job)

    async def _fold(self, partner: str, character: str, partner_name: str, character_name: str) -> None:
        fold = await self._run(lambda conn: _to_fold(conn, partner, character, self.keep_recent))
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
        await self._run(lambda conn: _save_summary(conn, partner, character, fold, summary.strip()))

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

    async def forget(self, partner: str, character: str | None = None) -> int:
        """Delete the partner's entries and summaries (with ``character`` only, when given);
        return the rows deleted (entries + summaries)."""

        def work(conn: sqlite3.Connection) -> int:
            where, args = _pair_filter(partner, character)
            with conn:
                deleted = conn.execute(f"DELETE FROM entries WHERE {where}", args).rowcount
                deleted += conn.execute(f"DELETE FROM summaries WHERE {where}", args).rowcount
            return int(deleted)

        return await self._run(work)

    # -- reading

    async def recall(self, partner: str, character: str) -> Recall:
        """The summary, the entries after it (at most ``keep_recent``, oldest first), and the count."""

        def work(conn: sqlite3.Connection) -> Recall:
            summary, upto_id = _summary(conn, partner, character)
            rows = conn.execute(
                "SELECT kind, text, at FROM entries WHERE partner = ? AND character = ? AND id > ? "
                "ORDER BY id DESC LIMIT ?", (partner, character, upto_id, self.keep_recent)).fetchall()
            (total,) = conn.execute("SELECT COUNT(*) FROM entries WHERE partner = ? AND character = ?",
                                    (partner, character)).fetchone()
            return Recall(summary, tuple(MemoryEntry(*row) for row in reversed(rows)), int(total))

        return await self._run(work)

    async def history(self, partner: str, character: str) -> tuple[MemoryEntry, ...]:
        """Every entry stored for the pair, folded ones included, oldest first."""

        def work(conn: sqlite3.Connection) -> tuple[MemoryEntry, ...]:
            rows = conn.execute("SELECT kind, text, at FROM entries WHERE partner = ? AND character = ? ORDER BY id",
                                (partner, character)).fetchall()
            return tuple(MemoryEntry(*row) for row in rows)

        return await self._run(work)

    async def partners(self, character: str | None = None, *, partner: str | None = None) -> list[tuple[str, str, int]]:
        """``(partner, character, entries)`` for every pair with entries, sorted; only
        ``character``'s and/or ``partner``'s pairs when given."""

        def work(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
            clauses, args = [], []
            for column, value in (("partner", partner), ("character", character)):
                if value is not None:
                    clauses.append(f"{column} = ?")
                    args.append(value)
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            rows = conn.execute(f"SELECT partner, character, COUNT(*) FROM entries {where} "
                                "GROUP BY partner, character ORDER BY partner, character", args).fetchall()
            return [(p, c, int(n)) for p, c, n in rows]

        return await self._run(work)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _sidecars(path: Path) -> tuple[Path, Path]:
    """The WAL-mode files SQLite keeps next to a database."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _forget_flush(flushes: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        flushes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here: an append cancelled while it ran no longer awaits it

    return done


# -- thread-side helpers (called with the connection, in the memory thread)

def _insert(conn: sqlite3.Connection, rows: list[tuple[str, str, str, str, float]]) -> None:
    with conn:
        conn.executemany("INSERT INTO entries(partner, character, kind, text, at) VALUES (?, ?, ?, ?, ?)", rows)


def _summary(conn: sqlite3.Connection, partner: str, character: str) -> tuple[str, int]:
    row = conn.execute("SELECT summary, upto_id FROM summaries WHERE partner = ? AND character = ?",
                       (partner, character)).fetchone()
    return (row[0], int(row[1])) if row else ("", 0)


def _to_fold(conn: sqlite3.Connection, partner: str, character: str, keep_recent: int) -> _Fold | None:
    previous, upto_id = _summary(conn, partner, character)
    rows = conn.execute("SELECT id, kind, text, at FROM entries WHERE partner = ? AND character = ? AND id > ? ORDER BY id",
                        (partner, character, upto_id)).fetchall()
    older = rows[:-keep_recent]
    if not older:
        return None
    return _Fold(previous, upto_id, tuple(r[0] for r in older), tuple(MemoryEntry(*r[1:]) for r in older))


def _save_summary(conn: sqlite3.Connection, partner: str, character: str, fold: _Fold, summary: str) -> None:
    """Write the new summary, unless the pair was forgotten (or folded) while it was being made."""
    if _summary(conn, partner, character)[1] != fold.upto_id:
        return
    if conn.execute("SELECT 1 FROM entries WHERE id = ? AND partner = ? AND character = ?",
                    (fold.ids[-1], partner, character)).fetchone() is None:
        return
    with conn:
        conn.execute("INSERT INTO summaries(partner, character, summary, upto_id) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT(partner, character) DO UPDATE SET summary = excluded.summary, upto_id = excluded.upto_id",
                     (partner, character, summary, fold.ids[-1]))


def _pair_filter(partner: str, character: str | None) -> tuple[str, tuple[Any, ...]]:
    if character is None:
        return "partner = ?", (partner,)
    return "partner = ? AND character = ?", (partner, character)

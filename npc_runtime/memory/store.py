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

* retries, pending entries and what closing does with them are :class:`~npc_runtime.memory.base.Memory`'s,
  the same for every backend: a write is tried ``write_attempts`` times (``retry_delay_s``, doubling, between
  tries). Entries that still could not be written stay *pending* (in order, all pairs, at most ``max_pending``:
  past that the oldest are dropped with an error log) and go into the database before the next append's own,
  and :meth:`MemoryStore.append` raises (the caller tells its client); :meth:`MemoryStore.aclose` tries them
  once more and logs what is lost;
* before every database call the file at ``path`` is compared (device and inode) with the one the
  connection has open: a database deleted or replaced under a running server is noticed, the old
  connection is closed and the file at the path is opened (created, with the schema) again, with a
  warning, so that what is written next is what a restart finds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from npc_runtime.engine_thread import EngineThread
from npc_runtime.memory.base import Fold, Memory, Row, memory_failed, memory_unavailable
from npc_runtime.memory.records import MemoryEntry, Recall, Summarizer

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


class MemoryStore(Memory):
    """Conversation memory in one SQLite file (see the module docstring).

    ``open()`` before use, ``aclose()`` after. ``clock`` stamps entries whose ``at`` is 0."""

    def __init__(self, path: Path, *, keep_recent: int = 16, summarizer: Summarizer | None = None,
                 clock: Callable[[], float] = time.time, write_attempts: int = 3, retry_delay_s: float = 0.1,
                 max_pending: int = 1000, busy_timeout_s: float = 5.0) -> None:
        super().__init__(keep_recent=keep_recent, summarizer=summarizer, clock=clock, write_attempts=write_attempts,
                         retry_delay_s=retry_delay_s, max_pending=max_pending)
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._thread = EngineThread("memory", closed_error=memory_unavailable, failure=memory_failed)
        self._conn: sqlite3.Connection | None = None  # used in the thread only
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file _conn has open
        self._sidecars: dict[Path, tuple[int, int] | None] = {}  # its -wal and -shm files, the same way
        self._is_open = False  # open() succeeded and aclose() has not run: reopen the file if it goes away

    # -- lifecycle

    async def open(self) -> None:
        """Create the parent directory and the schema. Raises ``memory_unavailable`` when the
        path is not a usable SQLite database (not one, unreadable, a newer schema)."""
        await self._thread.call(self._open)

    async def _close_db(self) -> None:
        await self._thread.aclose(self._close)

    @property
    def _usable(self) -> bool:
        return self._is_open and not self._thread.closed

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

    # -- the database side of writing (the rest is Memory's)

    async def _insert(self, rows: list[Row]) -> None:
        await self._run(lambda conn: _insert(conn, rows))

    async def _to_fold(self, partner: str, character: str) -> Fold | None:
        return await self._run(lambda conn: _to_fold(conn, partner, character, self.keep_recent))

    async def _save_summary(self, partner: str, character: str, fold: Fold, summary: str) -> None:
        await self._run(lambda conn: _save_summary(conn, partner, character, fold, summary))

    async def forget(self, partner: str, character: str | None = None) -> int:
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


# -- thread-side helpers (called with the connection, in the memory thread)

def _insert(conn: sqlite3.Connection, rows: list[Row]) -> None:
    with conn:
        conn.executemany("INSERT INTO entries(partner, character, kind, text, at) VALUES (?, ?, ?, ?, ?)", rows)


def _summary(conn: sqlite3.Connection, partner: str, character: str) -> tuple[str, int]:
    row = conn.execute("SELECT summary, upto_id FROM summaries WHERE partner = ? AND character = ?",
                       (partner, character)).fetchone()
    return (row[0], int(row[1])) if row else ("", 0)


def _to_fold(conn: sqlite3.Connection, partner: str, character: str, keep_recent: int) -> Fold | None:
    previous, upto_id = _summary(conn, partner, character)
    rows = conn.execute("SELECT id, kind, text, at FROM entries WHERE partner = ? AND character = ? AND id > ? ORDER BY id",
                        (partner, character, upto_id)).fetchall()
    older = rows[:-keep_recent]
    if not older:
        return None
    return Fold(previous, upto_id, tuple(r[0] for r in older), tuple(MemoryEntry(*r[1:]) for r in older))


def _save_summary(conn: sqlite3.Connection, partner: str, character: str, fold: Fold, summary: str) -> None:
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

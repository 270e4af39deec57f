"""The PostgreSQL store: memory shared by several servers (``npc serve --memory-url postgresql://...``).

The same interface and behaviour as the SQLite :class:`~npc_runtime.memory.store.MemoryStore` (retries, pending
entries, folding and closing are :class:`~npc_runtime.memory.base.Memory`'s), on asyncpg: native asyncio, a
connection pool (``pool_size`` connections at most), nothing blocks the event loop.

Schema (created and migrated on :meth:`PostgresMemoryStore.open`, under an advisory lock so that servers
starting together do it once)::

    npc_schema_version(component, version)             ('memory', 1)
    npc_memory_entries(id BIGSERIAL, partner, character, kind, text, at)   index (partner, character, id)
    npc_memory_summaries(partner, character, summary, upto_id)             primary key (partner, character)

A database whose memory schema is newer than this runtime reads is refused (``memory_unavailable``), never
written. Each migration step in :data:`MIGRATIONS` takes the schema one version up.

Errors: a database that cannot be reached (refused, timed out, shut down, the connection lost mid-query) is
``memory_unavailable``; an error the database answers with is ``memory_failed``; messages name the URL without
its password. A connection lost with the database is replaced by the pool at the next use, so a database that
comes back is written again without a restart (the entries kept pending meanwhile first, in order).

Text PostgreSQL cannot store (NUL characters, lone surrogates) is stored with U+FFFD in their place: one such line
must not block every later write.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import structlog

from npc_runtime.errors import NpcError
from npc_runtime.memory.base import Fold, Memory, Row, memory_failed, memory_unavailable
from npc_runtime.memory.records import MemoryEntry, Recall, Summarizer

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: The schema version this runtime reads and writes; MIGRATIONS[n] takes a database from version n to n + 1.
SCHEMA_VERSION = 1
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE npc_memory_entries(
            id BIGSERIAL PRIMARY KEY, partner TEXT NOT NULL, character TEXT NOT NULL,
            kind TEXT NOT NULL, text TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX npc_memory_entries_pair ON npc_memory_entries(partner, character, id)",
        """CREATE TABLE npc_memory_summaries(
            partner TEXT NOT NULL, character TEXT NOT NULL, summary TEXT NOT NULL, upto_id BIGINT NOT NULL,
            PRIMARY KEY(partner, character))""",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION
#: pg_advisory_xact_lock key for creating and migrating the schema (any constant; "npc_memory" as an int).
_SCHEMA_LOCK = 0x6E70635F6D656D

#: Errors that mean the database could not be reached or went away (retrying later can work).
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # e.g. "cannot switch to state 15": the server shut down mid-operation
)

SCHEMES = ("postgresql", "postgres")


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an unreadable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def is_postgres_url(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in SCHEMES


class PostgresMemoryStore(Memory):
    """Conversation memory in a PostgreSQL database (see the module docstring).

    ``open()`` before use, ``aclose()`` after. ``connect_timeout_s``: connecting; ``command_timeout_s``: one
    statement; ``pool_size``: connections at most."""

    def __init__(self, url: str, *, keep_recent: int = 16, summarizer: Summarizer | None = None,
                 clock: Callable[[], float] | None = None, write_attempts: int = 3, retry_delay_s: float = 0.1,
                 max_pending: int = 1000, pool_size: int = 4, connect_timeout_s: float = 5.0,
                 command_timeout_s: float = 10.0) -> None:
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        super().__init__(keep_recent=keep_recent, summarizer=summarizer, write_attempts=write_attempts,
                         retry_delay_s=retry_delay_s, max_pending=max_pending, **extra)
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL (postgresql://...): {redact(url)}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self.where = redact(url)
        self.pool_size, self.connect_timeout_s, self.command_timeout_s = pool_size, connect_timeout_s, command_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._closed = False

    # -- lifecycle

    async def open(self) -> None:
        """Connect (the pool), then create or migrate the schema. Raises ``memory_unavailable`` when the database
        cannot be reached, or holds a newer memory schema than this runtime reads."""
        if self._pool is not None:
            return
        if self._closed:
            raise memory_unavailable(f"{self.where}: the memory store is closed")
        try:
            pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout_s,
                command_timeout=self.command_timeout_s)
        except Exception as exc:  # noqa: BLE001 - every way a connect fails is one error, with its cause
            raise memory_unavailable(f"{self.where}: cannot connect ({type(exc).__name__}: {exc})") from exc
        try:
            await self._call(self._migrate, pool=pool, unreachable=memory_unavailable, failed=memory_unavailable)
        except NpcError:
            await _close_pool(pool)
            raise
        self._pool = pool

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS npc_schema_version("
                               "component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            version = await conn.fetchval("SELECT version FROM npc_schema_version WHERE component = 'memory'") or 0
            if version > SCHEMA_VERSION:
                raise memory_unavailable(f"{self.where}: memory schema version {version}, this runtime reads {SCHEMA_VERSION}")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    await conn.execute(statement)
                log.info("memory schema migrated", to_version=step + 1, database=self.where)
            await conn.execute("INSERT INTO npc_schema_version VALUES ('memory', $1) "
                               "ON CONFLICT(component) DO UPDATE SET version = excluded.version", SCHEMA_VERSION)

    async def _close_db(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await _close_pool(pool)

    @property
    def _usable(self) -> bool:
        return self._pool is not None and not self._closed

    async def _call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, pool: asyncpg.Pool | None = None,
                    unreachable: Callable[[str], NpcError] = memory_unavailable,
                    failed: Callable[[str], NpcError] = memory_failed) -> T:
        """Run ``fn(connection)`` on a pooled connection; the driver's errors made ``memory_unavailable`` (the
        database cannot be reached) or ``memory_failed`` (it answered with an error)."""
        pool = pool or self._pool
        if pool is None:
            raise memory_unavailable(f"{self.where}: the memory store is not open")
        try:
            async with pool.acquire(timeout=self.connect_timeout_s) as conn:
                return await fn(conn)
        except NpcError:
            raise
        except _UNREACHABLE as exc:
            raise unreachable(f"{self.where}: database unreachable ({type(exc).__name__}: {exc})") from exc
        except asyncpg.PostgresError as exc:
            raise failed(f"{self.where}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - the driver's other surprises: an error with a code, never a crash
            raise failed(f"{self.where}: {type(exc).__name__}: {exc}") from exc

    # -- the database side of writing (the rest is Memory's)

    async def _insert(self, rows: list[Row]) -> None:
        clean = [(_text(p), _text(c), k, _text(t), at) for p, c, k, t, at in rows]

        async def work(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.executemany("INSERT INTO npc_memory_entries(partner, character, kind, text, at) "
                                       "VALUES ($1, $2, $3, $4, $5)", clean)

        await self._call(work)

    async def _to_fold(self, partner: str, character: str) -> Fold | None:
        partner, character = _text(partner), _text(character)

        async def work(conn: asyncpg.Connection) -> Fold | None:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                previous, upto_id = await _summary(conn, partner, character)
                rows = await conn.fetch("SELECT id, kind, text, at FROM npc_memory_entries "
                                        "WHERE partner = $1 AND character = $2 AND id > $3 ORDER BY id",
                                        partner, character, upto_id)
            older = rows[:-self.keep_recent]
            if not older:
                return None
            return Fold(previous, upto_id, tuple(int(r["id"]) for r in older),
                        tuple(MemoryEntry(r["kind"], r["text"], float(r["at"])) for r in older))

        return await self._call(work)

    async def _save_summary(self, partner: str, character: str, fold: Fold, summary: str) -> None:
        partner, character, summary = _text(partner), _text(character), _text(summary)

        async def work(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                # one fold per pair at a time across servers: the check and the write under the pair's lock
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))", partner, character)
                if (await _summary(conn, partner, character))[1] != fold.upto_id:
                    return  # folded meanwhile (here or on another server)
                if await conn.fetchval("SELECT 1 FROM npc_memory_entries WHERE id = $1 AND partner = $2 AND character = $3",
                                       fold.ids[-1], partner, character) is None:
                    return  # forgotten meanwhile
                await conn.execute(
                    "INSERT INTO npc_memory_summaries(partner, character, summary, upto_id) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT(partner, character) DO UPDATE SET summary = excluded.summary, upto_id = excluded.upto_id",
                    partner, character, summary, fold.ids[-1])

        await self._call(work)

    async def forget(self, partner: str, character: str | None = None) -> int:
        where, args = _pair_filter(_text(partner), None if character is None else _text(character))

        async def work(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                deleted = _count(await conn.execute(f"DELETE FROM npc_memory_entries WHERE {where}", *args))
                deleted += _count(await conn.execute(f"DELETE FROM npc_memory_summaries WHERE {where}", *args))
            return deleted

        return await self._call(work)

    # -- reading

    async def recall(self, partner: str, character: str) -> Recall:
        partner, character = _text(partner), _text(character)

        async def work(conn: asyncpg.Connection) -> Recall:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                summary, upto_id = await _summary(conn, partner, character)
                rows = await conn.fetch("SELECT kind, text, at FROM npc_memory_entries "
                                        "WHERE partner = $1 AND character = $2 AND id > $3 ORDER BY id DESC LIMIT $4",
                                        partner, character, upto_id, self.keep_recent)
                total = await conn.fetchval("SELECT COUNT(*) FROM npc_memory_entries WHERE partner = $1 AND character = $2",
                                            partner, character)
            return Recall(summary, _entries(reversed(rows)), int(total))

        return await self._call(work)

    async def history(self, partner: str, character: str) -> tuple[MemoryEntry, ...]:
        partner, character = _text(partner), _text(character)

        async def work(conn: asyncpg.Connection) -> tuple[MemoryEntry, ...]:
            rows = await conn.fetch("SELECT kind, text, at FROM npc_memory_entries WHERE partner = $1 AND character = $2 "
                                    "ORDER BY id", partner, character)
            return _entries(rows)

        return await self._call(work)

    async def partners(self, character: str | None = None, *, partner: str | None = None) -> list[tuple[str, str, int]]:
        clauses: list[str] = []
        args: list[str] = []
        for column, value in (("partner", partner), ("character", character)):
            if value is not None:
                args.append(_text(value))
                clauses.append(f"{column} = ${len(args)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""

        async def work(conn: asyncpg.Connection) -> list[tuple[str, str, int]]:
            rows = await conn.fetch(f"SELECT partner, character, COUNT(*) AS n FROM npc_memory_entries {where} "
                                    'GROUP BY partner, character ORDER BY partner COLLATE "C", character COLLATE "C"', *args)
            return [(r["partner"], r["character"], int(r["n"])) for r in rows]

        return await self._call(work)


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close gracefully, or (the database gone: nothing to say goodbye to) at once."""
    try:
        await asyncio.wait_for(pool.close(), timeout=5.0)
    except Exception:  # noqa: BLE001 - closing never fails the caller
        pool.terminate()


async def _summary(conn: asyncpg.Connection, partner: str, character: str) -> tuple[str, int]:
    row = await conn.fetchrow("SELECT summary, upto_id FROM npc_memory_summaries WHERE partner = $1 AND character = $2",
                              partner, character)
    return (row["summary"], int(row["upto_id"])) if row is not None else ("", 0)


def _entries(rows: Any) -> tuple[MemoryEntry, ...]:
    return tuple(MemoryEntry(r["kind"], r["text"], float(r["at"])) for r in rows)


def _pair_filter(partner: str, character: str | None) -> tuple[str, Sequence[str]]:
    if character is None:
        return "partner = $1", (partner,)
    return "partner = $1 AND character = $2", (partner, character)


def _count(status: str) -> int:
    """The row count of a command status such as ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])


def _text(value: str) -> str:
    """``value`` as PostgreSQL can store it: UTF-8 without NUL (NUL and lone surrogates become U+FFFD)."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    return value

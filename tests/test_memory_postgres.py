"""Memory on PostgreSQL (npc_runtime/memory/postgres.py): what only a shared database does, and its failures.

A real PostgreSQL server (tests/pg_fixture.py: Debian's binaries, initdb in a temporary folder, a free loopback port),
a new database per test. The behaviour both backends share is tested in test_memory.py on both. Here: the schema and
its version, two stores (two servers) on one database, the database stopped under a running store and under a running
server (an ``error`` event, nothing lost, written once it is back), text PostgreSQL cannot store, `npc memory
--memory-url` as a command.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import scene_dict
from pg_fixture import PgServer, free_port, postgres  # noqa: F401  (fixture)
from server_fixture import registry, serving

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.errors import NpcError
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.memory import MemoryEntry, Recall
from npc_runtime.memory.postgres import SCHEMA_VERSION, PostgresMemoryStore, redact
from npc_runtime.metrics import Metrics
from npc_runtime.server import NpcServer
from npc_runtime.session import Services
from npc_runtime.settings import Settings
from npc_runtime.wiring import build_memory

ROOT = Path(__file__).resolve().parents[1]


def lines(n: int, start: int = 0) -> list[MemoryEntry]:
    return [MemoryEntry("player" if i % 2 == 0 else "character", f"line {i}", 1.0) for i in range(start, start + n)]


@pytest.fixture
def db(postgres: PgServer) -> str:  # noqa: F811
    return postgres.new_database()


@asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[PostgresMemoryStore]:
    store = PostgresMemoryStore(url, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


@contextmanager
def stopped(server: PgServer) -> Iterator[None]:
    """The database server is down inside the block (a clean, fast shutdown), back up after it, whatever happens."""
    server.stop("fast")
    try:
        yield
    finally:
        if not server.running:
            server.start()


# -- the schema

async def test_the_schema_is_created_once_and_versioned(postgres: PgServer, db: str) -> None:  # noqa: F811
    async def open_one() -> None:
        async with opened(db) as store:
            await store.append("kai", "jin", lines(1))

    await asyncio.gather(*(open_one() for _ in range(4)))  # four servers starting together
    assert postgres.psql(db, "SELECT component, version FROM npc_schema_version").split() == [f"memory|{SCHEMA_VERSION}"]
    tables = postgres.psql(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
    assert tables == ["npc_memory_entries", "npc_memory_summaries", "npc_schema_version"]
    assert postgres.psql(db, "SELECT count(*) FROM npc_memory_entries").strip() == "4"


async def test_a_newer_schema_is_refused_and_never_written(postgres: PgServer, db: str) -> None:  # noqa: F811
    async with opened(db) as store:
        await store.append("kai", "jin", lines(1))
    postgres.psql(db, "UPDATE npc_schema_version SET version = 99 WHERE component = 'memory'")
    store = PostgresMemoryStore(db)
    with pytest.raises(NpcError) as info:
        await store.open()
    assert info.value.code == "memory_unavailable"
    assert "schema version 99" in info.value.message and f"reads {SCHEMA_VERSION}" in info.value.message
    await store.aclose()
    assert postgres.psql(db, "SELECT version FROM npc_schema_version").strip() == "99"


async def test_an_unreachable_database_is_memory_unavailable_without_its_password() -> None:
    url = f"postgresql://npc:s3cret@127.0.0.1:{free_port()}/none"  # nothing listens there
    store = PostgresMemoryStore(url, connect_timeout_s=2)
    with pytest.raises(NpcError) as info:
        await store.open()
    assert info.value.code == "memory_unavailable" and "s3cret" not in info.value.message
    assert redact(url) in info.value.message and "cannot connect" in info.value.message
    with pytest.raises(NpcError) as info:
        await store.recall("kai", "jin")
    assert info.value.code == "memory_unavailable"
    await store.aclose()


def test_settings_choose_the_backend(tmp_path: Path) -> None:
    memory = build_memory(Settings(memory_url="postgresql://npc@127.0.0.1:1/x", data_dir=tmp_path))
    assert isinstance(memory, PostgresMemoryStore) and memory.url == "postgresql://npc@127.0.0.1:1/x"
    assert type(build_memory(Settings(data_dir=tmp_path))).__name__ == "MemoryStore"  # SQLite stays the default
    with pytest.raises(ValueError, match="memory_url"):
        Settings(memory_url="mysql://x/y")
    with pytest.raises(ValueError, match="PostgreSQL URL"):
        PostgresMemoryStore("sqlite:///x.db")


# -- shared by several servers

async def test_two_stores_share_one_database_and_fold_each_entry_once(db: str) -> None:
    """Two servers writing the same pair at once (a player who moved): every entry kept, in the order each server
    wrote them, and the summary folds each old entry once (the fold is checked and saved under the pair's lock)."""
    async with opened(db, keep_recent=3) as a, opened(db, keep_recent=3) as b:
        async def writer(store: PostgresMemoryStore, name: str) -> None:
            for i in range(15):
                await store.append("kai", "jin", [MemoryEntry("player", f"My name is {name}{i}.")])

        await asyncio.gather(writer(a, "a"), writer(b, "b"))
        history = [e.text for e in await b.history("kai", "jin")]
        assert sorted(history) == sorted(f"My name is {n}{i}." for n in "ab" for i in range(15))
        for name in "ab":
            mine = [t for t in history if t.startswith(f"My name is {name}")]
            assert mine == [f"My name is {name}{i}." for i in range(15)]
        recall = await a.recall("kai", "jin")
        assert recall.total == 30 and [e.text for e in recall.recent] == history[-3:]
        folded = recall.summary.splitlines()
        assert len(folded) == len(set(folded))  # nothing folded twice
        assert await b.recall("kai", "jin") == recall


async def test_text_postgresql_cannot_store_is_kept_readable_and_blocks_nothing(db: str) -> None:
    async with opened(db) as store:
        await store.append("kai", "jin", [MemoryEntry("player", "a\x00b", 1.0), MemoryEntry("player", "c\ud800d", 2.0)])
        await store.append("kai", "jin", [MemoryEntry("player", "next", 3.0)])
        assert [e.text for e in await store.history("kai", "jin")] == ["a\ufffdb", "c\ufffdd", "next"]
        assert store.pending == 0


# -- the database goes away

async def test_a_database_that_goes_away_keeps_the_entries_and_writes_them_when_it_is_back(postgres: PgServer, db: str) -> None:  # noqa: F811
    async with opened(db, keep_recent=50, retry_delay_s=0.05) as store:
        await store.append("kai", "jin", lines(1))
        with stopped(postgres):
            with structlog.testing.capture_logs() as logs:
                with pytest.raises(NpcError) as info:
                    await store.append("kai", "jin", lines(2, start=1))
                with pytest.raises(NpcError):
                    await store.recall("kai", "jin")
            assert info.value.code == "memory_unavailable" and "database unreachable" in info.value.message
            assert [e["attempt"] for e in logs if e["event"] == "memory write failed"] == [1, 2, 3]
            assert "line" not in str(logs)  # no player words in the log
            assert store.pending == 2
        await store.append("kai", "jin", lines(1, start=3))  # back: the pool reconnects, the kept lines go first
        assert store.pending == 0
        assert [e.text for e in await store.history("kai", "jin")] == ["line 0", "line 1", "line 2", "line 3"]


async def test_a_database_crash_mid_session_loses_nothing(postgres: PgServer, db: str) -> None:  # noqa: F811
    """An immediate shutdown (what a crash does to connections): the same as a clean one."""
    async with opened(db, keep_recent=50, retry_delay_s=0.05, write_attempts=2) as store:
        await store.append("kai", "jin", lines(1))
        postgres.stop("immediate")
        try:
            with pytest.raises(NpcError):
                await store.append("kai", "jin", lines(1, start=1))
        finally:
            postgres.start()
        assert [e.text for e in await store.history("kai", "jin")] == ["line 0"]  # a read reconnects too
        await store.append("kai", "jin", [])
        assert [e.text for e in await store.history("kai", "jin")] == ["line 0", "line 1"]


async def test_pending_entries_are_written_at_close_once_the_database_is_back(postgres: PgServer, db: str) -> None:  # noqa: F811
    store = PostgresMemoryStore(db, retry_delay_s=0.01, write_attempts=1)
    await store.open()
    with stopped(postgres):
        with pytest.raises(NpcError):
            await store.append("kai", "jin", lines(2))
    await store.aclose()
    async with opened(db) as again:
        assert [e.text for e in await again.history("kai", "jin")] == ["line 0", "line 1"]


# -- through a real server

@asynccontextmanager
async def running(llm: Any, url: str, metrics: Metrics | None = None) -> AsyncIterator[NpcServer]:
    memory = PostgresMemoryStore(url, retry_delay_s=0.05)
    await memory.open()
    try:
        async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(llm=llm), memory=memory,
                                                            metrics=metrics)) as server:
            yield server
    finally:
        await memory.aclose()


async def idle(server: NpcServer) -> None:
    while server.sessions:
        await asyncio.sleep(0.01)


async def test_a_player_is_remembered_by_another_server_on_the_same_database(db: str) -> None:
    """Two servers (two stores) on one database: what kai told server A, server B puts in the prompt."""
    async with running(FakeLLM(["Nice to meet you, Kai."]), db) as a:
        async with NpcClient.connect(a.url) as client:
            await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_id="kai", player_name="Kai")
            [*_, end] = [e async for e in client.say("My name is Kai and I'm allergic to eggs.")]
            assert isinstance(end, p.ResponseEnd) and end.status == "completed"
        await idle(a)
        llm = FakeLLM(["Welcome back."])
        async with running(llm, db) as b:
            async with NpcClient.connect(b.url) as client:
                await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_id="kai", player_name="Kai")
                [e async for e in client.say("Do you remember me?")]
    prompt = "\n".join(m.content for m in llm.requests[-1].messages)
    assert "allergic to eggs" in prompt
    assert "Nice to meet you, Kai." not in prompt  # facts only, never the character's own lines


async def test_the_database_stopped_mid_session_is_an_error_event_and_the_turn_is_not_lost(postgres: PgServer, db: str) -> None:  # noqa: F811
    """PostgreSQL stops during a conversation: the turn completes, the client gets a retryable, non-fatal
    memory_unavailable, the session goes on; once the database is back the next line writes the kept ones first,
    in order. /metrics counts the failure and ends with nothing pending."""
    metrics = Metrics()
    async with running(FakeLLM(["Hello Kai.", "Firm it is.", "Sure."]), db, metrics=metrics) as server:
        async with NpcClient.connect(server.url) as client:
            await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_id="kai", player_name="Kai")
            with stopped(postgres):
                await client.send(p.TextInput(text="My name is Kai."))
                events: list[Any] = []
                while not (any(isinstance(e, p.ResponseEnd) for e in events) and any(isinstance(e, p.ErrorEvent) for e in events)):
                    events.append(await client.recv(timeout=20))
                [error] = [e for e in events if isinstance(e, p.ErrorEvent)]
                [end] = [e for e in events if isinstance(e, p.ResponseEnd)]
                assert error.code == "memory_unavailable" and error.retryable and not error.fatal
                assert "Kai" not in error.message
                assert end.status == "completed" and end.text == "Hello Kai."
            ends = [e async for e in client.say("I like my noodles firm.")]  # the database is back
            assert isinstance(ends[-1], p.ResponseEnd) and ends[-1].text == "Firm it is."
            ends = [e async for e in client.say("Thanks.")]  # settles the previous reply into memory
        await idle(server)
        assert server.services.memory is not None and server.services.memory.pending == 0
    async with opened(db) as store:
        assert [e.text for e in await store.history("kai", "jin")] == [
            "My name is Kai.", "Hello Kai.", "I like my noodles firm.", "Firm it is.", "Thanks.", "Sure."]
    scrape = metrics.render().decode()
    assert "npc_memory_write_failures_total 1.0" in scrape and "npc_memory_pending_entries 0.0" in scrape


async def test_a_database_down_at_session_start_is_said_and_the_conversation_is_saved_once_it_is_back(
        postgres: PgServer, db: str) -> None:  # noqa: F811
    """The database is down when the player arrives: session.ready, then memory_unavailable (what the character
    remembers could not be read); the conversation goes on, and what is said is written once the database is back."""
    async with running(FakeLLM(["Hello Kai.", "Noted."]), db) as server:
        async with NpcClient.connect(server.url) as client:
            with stopped(postgres):
                await client.send(p.SessionStart(character="jin", scene=scene_dict("ramen_shop.json"),
                                                 player=p.Player(id="kai", name="Kai")))
                ready = await client.recv(timeout=20)
                assert isinstance(ready, p.SessionReady), ready
                error = await client.recv(timeout=20)
                assert isinstance(error, p.ErrorEvent) and error.code == "memory_unavailable" and not error.fatal
                assert "could not be read" in error.message
            ends = [e async for e in client.say("My name is Kai.")]
            assert isinstance(ends[-1], p.ResponseEnd) and ends[-1].status == "completed"
            [e async for e in client.say("I like my noodles firm.")]
        await idle(server)
    async with opened(db) as store:
        assert [e.text for e in await store.history("kai", "jin")] == [
            "My name is Kai.", "Hello Kai.", "I like my noodles firm.", "Noted."]


# -- npc memory --memory-url, as a command

def _npc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "npc_runtime.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


async def test_npc_memory_show_and_forget_against_postgresql(postgres: PgServer, db: str) -> None:  # noqa: F811
    async with opened(db, keep_recent=2) as store:
        await store.append("kai", "jin", [MemoryEntry("player", "My name is Kai and I'm allergic to eggs.", 1.0), *lines(3)])
    shown = await asyncio.to_thread(_npc, "memory", "show", "kai", "--memory-url", db)
    assert shown.returncode == 0, shown.stderr
    assert "jin remembers kai: 4 entries" in shown.stdout and 'kai said: "My name is Kai' in shown.stdout
    by_env = await asyncio.to_thread(_npc, "memory", "show", "kai", env={"NPC_MEMORY_URL": db})
    assert by_env.stdout == shown.stdout
    forgot = await asyncio.to_thread(_npc, "memory", "forget", "kai", "--memory-url", db)
    assert (forgot.returncode, forgot.stdout.strip()) == (0, "forgot 4 entries of kai")
    async with opened(db) as store:
        assert await store.recall("kai", "jin") == Recall("", (), 0)
    down = await asyncio.to_thread(_npc, "memory", "show", "kai", "--memory-url",
                                   f"postgresql://npc:pw@127.0.0.1:{free_port()}/x")
    assert down.returncode == 1 and down.stdout == "" and "Traceback" not in down.stderr
    assert down.stderr.startswith("npc memory: ") and "cannot connect" in down.stderr and ":pw@" not in down.stderr
    bad = await asyncio.to_thread(_npc, "memory", "show", "kai", "--memory-url", "mysql://x/y")
    assert bad.returncode == 2 and "memory_url" in bad.stderr and "Traceback" not in bad.stderr

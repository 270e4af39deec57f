"""Memory through the server: what a player said is remembered across a server restart (a new
MemoryStore on the same file), per player and character.

Faults (scripted LLM): a database deleted under the running server is made again, and what is said next survives a
restart; a write that fails (a locked database) is reported to the client (``memory_unavailable``, retryable, not
fatal), counted in /metrics, and written with the next one.

The first tests script the LLM (session logic: what goes into the prompt); the last runs the real embedded
model: what it remembers reaches the model's prompt across a restart, and it answers (whether its words use the
memory is a quality figure, printed, not asserted: a model's words vary with the model, the CPU and its kernels)."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import scene_dict
from server_fixture import Recording, registry, serving

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.memory import MemoryStore
from npc_runtime.metrics import Metrics
from npc_runtime.server import NpcServer
from npc_runtime.session import Services


@asynccontextmanager
async def running(llm: Any, db: Path, *, keep_recent: int = 16, metrics: Metrics | None = None,
                  **store: Any) -> AsyncIterator[NpcServer]:
    """A whole server lifetime: personas, memory, server; everything closed on exit (a restart)."""
    memory = MemoryStore(db, keep_recent=keep_recent, **store)
    await memory.open()
    try:
        async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(llm=llm), memory=memory,
                                                            metrics=metrics)) as server:
            yield server
    finally:
        await memory.aclose()


async def say(url: str, player: str, character: str, lines: list[str], **options: Any) -> list[p.ResponseEnd]:
    ends = []
    async with NpcClient.connect(url) as client:
        await client.start_session(character, scene=scene_dict("ramen_shop.json"), player_id=player, player_name=player.title(),
                                   options=options)
        for line in lines:
            events = [e async for e in client.say(line)]
            assert isinstance(events[-1], p.ResponseEnd), events[-1]
            ends.append(events[-1])
    return ends


def prompt_of(llm: FakeLLM, index: int = -1) -> str:
    return "\n".join(m.content for m in llm.requests[index].messages)


async def test_a_returning_player_is_remembered_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "memory.sqlite3"
    llm = FakeLLM(["Nice to meet you, Kai.", "Noted."])
    async with running(llm, db) as server:
        await say(server.url, "kai", "jin", ["My name is Kai and I'm allergic to eggs.", "I like my noodles firm."])
        await say(server.url, "mira", "jin", ["Hello, I am Mira."])
    llm2 = FakeLLM(["Welcome back."])
    async with running(llm2, db) as server:
        await say(server.url, "kai", "jin", ["Do you remember me?"])
        kai_prompt = prompt_of(llm2)
        await say(server.url, "kai", "nova", ["Hi Nova."])
        nova_prompt = prompt_of(llm2)
    assert "allergic to eggs" in kai_prompt and "noodles firm" in kai_prompt
    # what the player said comes back as facts; the character's own earlier replies never do (a small model copies them)
    assert "Nice to meet you, Kai." not in kai_prompt and "Noted." not in kai_prompt
    request = llm2.requests[0]
    assert [m.role for m in request.messages[request.prefix_messages:]] == ["system", "user"]
    assert "Mira" not in kai_prompt, "another player's conversation leaked in"
    assert "allergic" not in nova_prompt, "another character's memory leaked in"


async def test_older_turns_survive_as_a_summary(tmp_path: Path) -> None:
    db = tmp_path / "memory.sqlite3"
    lines = ["My name is Kai and I'm allergic to eggs."] + [f"Tell me about bowl number {i}." for i in range(6)]
    async with running(FakeLLM(["Sure."]), db, keep_recent=4) as server:
        await say(server.url, "kai", "jin", lines)
    llm = FakeLLM(["Welcome back."])
    async with running(llm, db, keep_recent=4) as server:
        await say(server.url, "kai", "jin", ["Anything I should avoid?"])
    prompt = prompt_of(llm)
    assert "What you remember from earlier conversations with Kai" in prompt
    assert "allergic to eggs" in prompt  # folded into the summary, not dropped
    assert "bowl number 0" not in prompt.split("What you remember")[0]


async def stored(db: Path, player: str, character: str) -> list[str]:
    """What the database at ``db`` holds for the pair (read after the server is gone: what a restart finds)."""
    store = MemoryStore(db)
    await store.open()
    try:
        return [e.text for e in await store.history(player, character)]
    finally:
        await store.aclose()


async def idle(server: NpcServer) -> None:
    """Until every session of the server has closed (its memory written)."""
    while server.sessions:
        await asyncio.sleep(0.01)


async def test_a_memory_database_deleted_under_a_running_server_keeps_what_is_said_next(tmp_path: Path) -> None:
    db = tmp_path / "memory.sqlite3"
    async with running(FakeLLM(["Hello Kai.", "Firm it is."]), db) as server:
        await say(server.url, "kai", "jin", ["My name is Kai."])
        await idle(server)
        db.unlink()  # rm memory.sqlite3 while the server runs
        with structlog.testing.capture_logs() as logs:
            await say(server.url, "kai", "jin", ["I like my noodles firm."])
            await idle(server)
    assert any(e["event"].startswith("memory database deleted or replaced") for e in logs)
    # after the restart: what was said after the deletion is there (what was before went with the deleted file)
    assert await stored(db, "kai", "jin") == ["I like my noodles firm.", "Firm it is."]
    llm = FakeLLM(["Welcome back."])
    async with running(llm, db) as server:
        await say(server.url, "kai", "jin", ["Do you remember me?"])
    assert "noodles firm" in prompt_of(llm)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


async def test_a_failed_memory_write_is_reported_kept_and_written_later(tmp_path: Path) -> None:
    """The database is locked by another writer during a turn: the write is retried, then the client gets a
    retryable, non-fatal memory_unavailable error and the session goes on; the next write, once the lock is gone,
    stores the kept lines first. /metrics counts the failure."""
    db = tmp_path / "memory.sqlite3"
    metrics = Metrics()
    async with running(FakeLLM(["Hello Kai.", "Firm it is."]), db, metrics=metrics, busy_timeout_s=0.01,
                       retry_delay_s=0.01) as server:
        async with NpcClient.connect(server.url) as client:
            await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_id="kai", player_name="Kai")
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
            await client.send(p.TextInput(text="My name is Kai."))
            events: list[Any] = []
            while not (any(isinstance(e, p.ResponseEnd) for e in events) and any(isinstance(e, p.ErrorEvent) for e in events)):
                events.append(await client.recv(timeout=10))
            [error] = [e for e in events if isinstance(e, p.ErrorEvent)]
            [end] = [e for e in events if isinstance(e, p.ResponseEnd)]
            assert error.code == "memory_unavailable" and error.retryable and not error.fatal and error.response_id is None
            assert "Kai" not in error.message  # no player words in an error
            assert end.status == "completed" and end.text == "Hello Kai."  # the turn is not failed by memory
            lock.execute("COMMIT")
            lock.close()
            ends = [e async for e in client.say("I like my noodles firm.")]  # the session goes on
            assert isinstance(ends[-1], p.ResponseEnd) and ends[-1].text == "Firm it is."
        await idle(server)
        scrape = await asyncio.to_thread(_scrape, server.port)
    assert "npc_memory_write_failures_total 1.0" in scrape
    assert 'npc_errors_total{code="memory_unavailable"} 1.0' in scrape
    assert "npc_memory_pending_entries 0.0" in scrape
    assert await stored(db, "kai", "jin") == ["My name is Kai.", "Hello Kai.", "I like my noodles firm.", "Firm it is."]


@pytest.mark.engine
async def test_the_real_model_is_given_what_it_remembers(tmp_path: Path, llama_engine: Any) -> None:
    """After a restart the real model's prompt holds what the player said before, and it answers. Whether its words
    use it is the model's quality (printed): it varies with the model, the CPU and its kernels, so it is not asserted."""
    db = tmp_path / "memory.sqlite3"
    async with running(llama_engine, db) as server:
        first = await say(server.url, "kai", "jin", ["Hi Jin, my name is Kai and my favourite drink is yuzu soda."])
    engine = Recording(llama_engine)
    async with running(engine, db) as server:
        again = await say(server.url, "kai", "jin", ["What is my favourite drink?"])
    print(f"\nbefore restart: {first[0].text!r}\nafter restart:  {again[0].text!r} "
          f"({'mentions' if 'yuzu' in again[0].text.lower() else 'does not mention'} yuzu)")
    [request] = engine.requests
    assert "my favourite drink is yuzu soda" in engine.prompt() and request.messages[-1].content == "What is my favourite drink?"
    assert again[0].status == "completed" and (again[0].text.strip() or again[0].actions)


async def test_a_memory_that_cannot_be_read_at_the_start_is_said(tmp_path: Path) -> None:
    """The database is garbage when a player starts a session: session.ready comes as usual, then a retryable,
    non-fatal memory_unavailable (the conversation starts fresh), and the turn still works."""
    db = tmp_path / "memory.sqlite3"
    async with running(FakeLLM(["Hello Kai."]), db) as server:
        await say(server.url, "kai", "jin", ["My name is Kai."])
        await idle(server)
        garbage = tmp_path / "garbage"
        garbage.write_bytes(b"this is not a database" * 100)
        garbage.replace(db)  # replaced under the running server by something unreadable
        async with NpcClient.connect(server.url) as client:
            await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_id="kai", player_name="Kai")
            error = await client.recv(timeout=10)
            assert isinstance(error, p.ErrorEvent) and error.code == "memory_unavailable", error
            assert error.retryable and not error.fatal and error.response_id is None and "Kai" not in error.message
            ends = [e async for e in client.say("Hello?")]
            assert isinstance(ends[-1], p.ResponseEnd) and ends[-1].status == "completed"

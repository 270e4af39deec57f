"""Memory through the server: what a player said is remembered across a server restart (a new
MemoryStore on the same file), per player and character.

The first tests script the LLM (session logic: what goes into the prompt); the last runs the real embedded
model: what it remembers reaches the model's prompt across a restart, and it answers (whether its words use the
memory is a quality figure, printed, not asserted: a model's words vary with the model, the CPU and its kernels)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.memory import MemoryStore
from npc_runtime.server import NpcServer
from npc_runtime.session import Services

from conftest import scene_dict
from server_fixture import Recording, registry, serving


@asynccontextmanager
async def running(llm: Any, db: Path, *, keep_recent: int = 16) -> AsyncIterator[NpcServer]:
    """A whole server lifetime: personas, memory, server; everything closed on exit (a restart)."""
    memory = MemoryStore(db, keep_recent=keep_recent)
    await memory.open()
    try:
        async with registry() as personas, serving(Services(personas=personas, dialogue=Dialogue(llm=llm), memory=memory)) as server:
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

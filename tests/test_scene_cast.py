"""Several characters in one scene over the real server (scripted engine: session logic): the cast is
announced, every response event carries its speaker, scene.converse runs the characters in turn (each
hears the previous line), the player can address one of them, and a player line interrupts the
conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import scene_dict
from server_fixture import personas, serving  # noqa: F401  (personas: a fixture)

from npc_runtime import protocol as p
from npc_runtime.client import NpcClient, ServerError
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.base import GenerationRequest
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services


def reply(request: GenerationRequest) -> str:
    """Say who is speaking (from the system prompt) and echo the end of what was heard."""
    me = request.messages[0].content.split(",", 1)[0].removeprefix("You are ")
    heard = request.messages[-1].content if request.messages[-1].role == "user" else "(topic)"
    return f"{me} here, about {heard[-30:]!r}."


@pytest_asyncio.fixture(loop_scope="session")
async def server(personas: PersonaRegistry) -> AsyncIterator[tuple[NpcServer, FakeLLM]]:
    llm = FakeLLM(reply, token_delay=0.01)
    async with serving(Services(personas=personas, dialogue=Dialogue(llm=llm))) as srv:
        yield srv, llm


async def collect_until(client: NpcClient, kind: type, timeout: float = 30) -> list[Any]:
    events = []
    while True:
        event = await client.recv(timeout=timeout)
        events.append(event)
        if isinstance(event, kind):
            return events


async def test_two_characters_converse_with_speaker_tags_in_turn(server: tuple[NpcServer, FakeLLM]) -> None:
    srv, llm = server
    async with NpcClient.connect(srv.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_name="Kai", cast=["nova"])
        assert [c.id for c in ready.cast] == ["nova"]
        await client.send(p.Converse(topic="the rain tonight", turns=4))
        events = await collect_until(client, p.ConverseEnd)
    end = events[-1]
    assert (end.turns, end.status) == (4, "completed")
    starts = [e for e in events if isinstance(e, p.ResponseStart)]
    assert [s.speaker for s in starts] == ["jin", "nova", "jin", "nova"]
    assert all(s.trigger == "converse" for s in starts)
    by_response = {s.response_id: s.speaker for s in starts}
    for e in events:  # every response event is tagged with the right speaker
        if isinstance(e, (p.TextDelta, p.ResponseEnd, p.ActionEvent)):
            assert e.speaker == by_response[e.response_id]
    texts = [e.text for e in events if isinstance(e, p.ResponseEnd)]
    assert texts[0].startswith("Jin here") and texts[1].startswith("Nova here")
    # each line is what the next speaker heard
    assert texts[0][-20:].rstrip(".'") in llm.requests[-3].messages[-1].content


async def test_the_player_addresses_one_and_interrupts_the_conversation(server: tuple[NpcServer, FakeLLM]) -> None:
    srv, llm = server
    async with NpcClient.connect(srv.url) as client:
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"), player_name="Kai", cast=["nova"])
        await client.send(p.Converse(topic="passwords", turns=10))
        events = await collect_until(client, p.ResponseEnd)  # the first line is out
        await client.send(p.TextInput(text="Nova, what do you think?", to="nova"))
        events += await collect_until(client, p.ConverseEnd)
        assert events[-1].status == "interrupted" and events[-1].turns < 10
        events += await collect_until(client, p.ResponseEnd)
        while not (isinstance(events[-1], p.ResponseEnd) and events[-1].speaker == "nova"
                   and any(isinstance(e, p.ResponseStart) and e.trigger == "text" and e.response_id == events[-1].response_id for e in events)):
            events += await collect_until(client, p.ResponseEnd)
        answer = events[-1]
        assert answer.status == "completed" and answer.text.startswith("Nova here")
        # Jin heard what the player said to Nova
        await client.send(p.TextInput(text="And you, Jin?"))
        jin = [e async for e in client._until_end()]
        assert jin[-1].speaker == "jin"
        assert "said to Nova: Nova, what do you think?" in "\n".join(m.content for m in llm.requests[-1].messages)
        # errors: an unknown addressee; a conversation without a cast
        await client.send(p.TextInput(text="Hello?", to="ghost"))
        assert (await client.recv(timeout=5)).code == "not_in_scene"
    async with NpcClient.connect(srv.url) as solo:
        await solo.start_session("jin")
        await solo.send(p.Converse(topic="anything"))
        assert (await solo.recv(timeout=5)).code == "no_cast"
    async with NpcClient.connect(srv.url) as bad:
        with pytest.raises(ServerError) as info:
            await bad.start_session("jin", cast=["ghost"])
        assert info.value.code == "unknown_character"
        with pytest.raises(ServerError) as info:
            await bad.start_session("jin", cast=["jin"])
        assert info.value.code == "invalid_message"


@pytest.mark.engine
async def test_a_real_two_character_scene_with_voices(llama_engine: Any, personas: PersonaRegistry) -> None:
    """The embedded model and real speech engines: Jin (Piper) and Nova (espeak-ng here) converse;
    each line comes with its own speaker's audio and viseme cues."""
    from npc_runtime.client import AudioFrame
    from npc_runtime.settings import Settings
    from npc_runtime.wiring import VoiceBank

    voices = VoiceBank(Settings(tts="auto"))
    nova = personas.get("nova")
    services = Services(personas=personas, dialogue=Dialogue(llm=llama_engine),
                        voices=lambda persona: voices(persona) if persona.id != "nova" else voices._make("espeak", "en-us+f3", 1.0))
    try:
        async with serving(services) as srv, NpcClient.connect(srv.url) as client:
            await client.start_session("jin", scene=scene_dict("ramen_shop.json"), cast=["nova"], options={"seed": 4, "max_tokens": 30})
            await client.send(p.Converse(topic="the rain and the late-night customers", turns=2))
            events: list[Any] = []
            while not isinstance(events[-1] if events else None, p.ConverseEnd):
                events.append(await client.recv(timeout=120))
    finally:
        await voices.aclose()
    assert events[-1].status == "completed" and events[-1].turns == 2
    audio = [e for e in events if isinstance(e, p.AudioChunkEvent)]
    assert {e.speaker for e in audio} == {"jin", "nova"}
    assert all(e.visemes and e.sample_rate for e in audio)
    assert sum(isinstance(e, AudioFrame) for e in events) == len(audio)
    lines = [(e.speaker, e.text) for e in events if isinstance(e, p.ResponseEnd)]
    print(f"\n{lines}")
    assert [s for s, _ in lines] == ["jin", "nova"] and all(t.strip() for _, t in lines)
    assert nova.name == "Nova"

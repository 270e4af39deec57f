"""The OpenAI-Realtime-compatible endpoint (``/v1/realtime``, issue 17), driven by a client nobody here wrote: the
official ``openai`` Python SDK's realtime client (``AsyncOpenAI(websocket_base_url=...).realtime.connect``), against
a real server on 127.0.0.1:0.

Two kinds of test:

* **Protocol mapping** (fast): the server runs the test-only scripted LLM (tests/data/scripted_llm.json: fixed words
  and action tags), FakeTTS and, for voice, FakeVAD/FakeASR. They check the translation — event names, shapes, order,
  ids, audio at 24 kHz, function calls, cancel, truncate, errors — and prove nothing about a model.
* **Real engines** (``engine``): SmolLM2 in llama.cpp, espeak-ng, Silero VAD and faster-whisper tiny.en. Jin talks by
  text and by voice (JFK's recording at 24 kHz) and acts through function calls. The model's words are never
  asserted; the structure is.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from conftest import SHARED
from server_fixture import Recording, personas, registry, serving  # noqa: F401  (personas: a fixture)

from npc_runtime.access import Access
from npc_runtime.asr.fake import FakeASR, FakeVAD, silence, speech
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.scripted import ScriptedLLM
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services
from npc_runtime.tts.fake import FakeTTS

openai = pytest.importorskip("openai", reason="the openai SDK is in the test extra (pip install -e '.[test]')")
from openai import AsyncOpenAI  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "data" / "scripted_llm.json"
SCENE: dict[str, Any] = json.loads((ROOT / "scenes" / "ramen_shop.json").read_text(encoding="utf-8"))
RATE = 24000
CHOPSTICKS = "Could I have the chopsticks?"
#: The scripted reply to CHOPSTICKS (tests/data/scripted_llm.json), tags removed, and its action.
CHOPSTICKS_REPLY = "Chopsticks, coming right up. Mind the broth, it is hot."
STORY = "Tell me the whole story of this shop."
#: The scripted reply to STORY: long, streamed a token every 20 ms, so that a test can cut it short.
STORY_REPLY = next(r["reply"] for r in json.loads(SCRIPT.read_text(encoding="utf-8"))["rules"] if "story" in r.get("regex", ""))


def as_dict(event: Any) -> dict[str, Any]:
    """An SDK event as plain data (events the SDK does not know, ``npc.*``, come back as loose models too)."""
    return event.model_dump(mode="json", exclude_none=False) if hasattr(event, "model_dump") else dict(event)


async def collect(conn: Any, *, until: str = "response.done", timeout: float = 30.0, count: int = 1) -> list[dict[str, Any]]:
    """Events until the ``count``-th one of type ``until`` (included)."""
    events: list[dict[str, Any]] = []
    seen = 0
    async with asyncio.timeout(timeout):
        while True:
            event = as_dict(await conn.recv())
            events.append(event)
            if event["type"] == until:
                seen += 1
                if seen >= count:
                    return events


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def pcm_of(events: list[dict[str, Any]], response_id: str | None = None) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in of(events, "response.output_audio.delta")
                    if response_id is None or e["response_id"] == response_id)


def client_for(server: NpcServer, api_key: str = "sk-local-test-key") -> AsyncOpenAI:
    return AsyncOpenAI(api_key=api_key, websocket_base_url=f"ws://127.0.0.1:{server.port}/v1", max_retries=0)


@asynccontextmanager
async def connect(server: NpcServer, *, model: str = "jin", api_key: str = "sk-local-test-key",
                  **kwargs: Any) -> AsyncIterator[Any]:
    client = client_for(server, api_key)
    async with client.realtime.connect(model=model, max_retries=0, **kwargs) as conn:
        created = as_dict(await conn.recv())
        assert created["type"] == "session.created", created
        yield conn
    await client.close()


async def configure(conn: Any, session: dict[str, Any]) -> dict[str, Any]:
    await conn.session.update(session={"type": "realtime", **session})
    updated = as_dict(await asyncio.wait_for(conn.recv(), 60))
    assert updated["type"] == "session.updated", updated
    return updated


async def say(conn: Any, text: str, **response: Any) -> None:
    await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await conn.response.create(**({"response": response} if response else {}))


async def send_audio(conn: Any, pcm: bytes, *, chunk_ms: int = 100, pace: float = 0.0) -> None:
    """``pcm`` (24 kHz PCM16) in ``input_audio_buffer.append`` pieces; ``pace`` > 0 sleeps that share of real time."""
    step = RATE * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + step]).decode("ascii"))
        if pace:
            await asyncio.sleep(chunk_ms / 1000.0 * pace)


def check_text_turn(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The shape every answered turn has: created → message item with audio + transcript deltas → done; returns the
    response.done's response."""
    created, done = of(events, "response.created"), of(events, "response.done")
    assert len(created) == 1 and len(done) == 1, [e["type"] for e in events]
    response = done[0]["response"]
    assert response["id"] == created[0]["response"]["id"] and response["status"] == "completed", response
    messages = [item for item in response["output"] if item["type"] == "message"]
    assert len(messages) == 1 and messages[0]["role"] == "assistant"
    item_id = messages[0]["id"]
    deltas = [e for e in of(events, "response.output_audio_transcript.delta") if e["item_id"] == item_id]
    final = of(events, "response.output_audio_transcript.done")
    assert deltas and len(final) == 1
    assert "".join(d["delta"] for d in deltas) == final[0]["transcript"] == messages[0]["content"][0]["transcript"]
    assert final[0]["transcript"].strip()
    audio = pcm_of(events, response["id"])
    assert len(audio) > RATE // 5 * 2, "less than 200 ms of reply audio"
    assert len(of(events, "response.output_audio.done")) == 1
    # the 24 kHz audio lasts what the native response's audio lasted (resampled, not cut or stretched)
    native_ms = response["npc"]["audio_ms"]
    assert abs(len(audio) / 2 / RATE * 1000 - native_ms) < max(5.0, native_ms * 0.01), (len(audio), native_ms)
    order = [e["type"] for e in events if e.get("response_id") == response["id"] or e["type"].startswith("response.")]
    assert order.index("response.output_item.added") < order.index("response.output_audio_transcript.delta") < order.index("response.done")
    return dict(response)


def function_calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The function_call items of a turn, checked for the full event sequence: added, arguments delta and done,
    item done, each with the same item and call ids."""
    calls = []
    for added in of(events, "response.output_item.added"):
        if added["item"]["type"] != "function_call":
            continue
        item_id = added["item"]["id"]
        deltas = [e for e in of(events, "response.function_call_arguments.delta") if e["item_id"] == item_id]
        done = [e for e in of(events, "response.function_call_arguments.done") if e["item_id"] == item_id]
        item_done = [e for e in of(events, "response.output_item.done") if e["item"]["id"] == item_id]
        assert len(done) == 1 and len(item_done) == 1, item_id
        assert "".join(d["delta"] for d in deltas) == done[0]["arguments"] == item_done[0]["item"]["arguments"]
        assert done[0]["call_id"] == added["item"]["call_id"] == item_done[0]["item"]["call_id"]
        assert done[0]["name"] == added["item"]["name"] and item_done[0]["item"]["status"] == "completed"
        calls.append({"name": done[0]["name"], "arguments": json.loads(done[0]["arguments"]), "call_id": done[0]["call_id"]})
    return calls


# --------------------------------------------------------------------------- protocol mapping (scripted engine)


@pytest_asyncio.fixture(loop_scope="session")
async def scripted(personas: PersonaRegistry) -> AsyncIterator[tuple[NpcServer, Recording]]:
    """A real server with the scripted LLM (recorded: what the model was given), FakeTTS at Piper's 22,050 Hz (so the
    output is resampled to 24 kHz), and FakeVAD/FakeASR (a sine is speech; the transcript is the chopsticks line)."""
    llm = Recording(ScriptedLLM.from_file(SCRIPT))
    services = Services(personas=personas, dialogue=Dialogue(llm=llm), tts=FakeTTS(sample_rate=22050),
                        asr=FakeASR([CHOPSTICKS] * 20), vad=FakeVAD())
    async with serving(services) as srv:
        yield srv, llm


async def test_sdk_text_turn_streams_audio_transcript_and_the_action_as_a_function_call(scripted: tuple[NpcServer, Recording]) -> None:
    server, _ = scripted
    async with connect(server) as conn:
        updated = await configure(conn, {"npc": {"scene": SCENE, "player": {"name": "Kai"}}})
        session = updated["session"]
        tools = {t["name"]: t for t in session["tools"]}
        assert set(tools) == {"move", "grab", "give"}  # jin's verbs, each usable in the ramen shop
        give = tools["give"]["parameters"]
        assert give["required"] == ["object", "target"] and "chopsticks" in give["properties"]["object"]["enum"]
        assert give["properties"]["target"]["enum"] == ["player", "nova"]
        assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": RATE}
        await say(conn, CHOPSTICKS)
        events = await collect(conn)
    added = of(events, "conversation.item.added")
    assert added[0]["item"]["role"] == "user" and added[0]["item"]["content"][0]["text"] == CHOPSTICKS
    response = check_text_turn(events)
    assert of(events, "response.output_audio_transcript.done")[0]["transcript"] == CHOPSTICKS_REPLY
    calls = function_calls(events)
    assert [(c["name"], c["arguments"]) for c in calls] == [("give", {"object": "chopsticks", "target": "player"})]
    assert [i["type"] for i in response["output"]] == ["message", "function_call"]
    # the extensions: the action's place on the audio timeline, visemes covering the audio
    actions = of(events, "npc.action")
    assert len(actions) == 1 and actions[0]["call_id"] == calls[0]["call_id"] and actions[0]["at_ms"] is not None
    visemes = [cue for e in of(events, "npc.visemes") for cue in e["visemes"]]
    assert visemes and visemes[0]["start_ms"] == 0.0
    assert visemes[-1]["end_ms"] == pytest.approx(response["npc"]["audio_ms"], abs=1.0)


async def test_the_clients_own_tools_become_verbs_the_character_calls(scripted: tuple[NpcServer, Recording]) -> None:
    """session.tools as a Realtime client declares them: each function becomes a verb (an ``enum`` parameter: its
    values; ``x-npc-type``: an entity of the scene), the model's tags for them come back as function calls. A tool
    that cannot be a verb is refused with invalid_value and the session keeps its tools."""
    server, _ = scripted
    tools = [{"type": "function", "name": "emote", "description": "makes a gesture",
              "parameters": {"type": "object", "properties": {"gesture": {"type": "string", "enum": ["wave", "bow", "shrug"]}}}},
             {"type": "function", "name": "sit", "description": "sits down on a seat",
              "parameters": {"type": "object", "properties": {"seat": {"type": "string", "x-npc-type": "object"}}}}]
    scene = {**SCENE, "objects": [*SCENE["objects"], {"id": "stool", "description": "a free wooden stool"}]}
    async with connect(server) as conn:
        updated = await configure(conn, {"tools": tools, "npc": {"scene": scene}})
        listed = {t["name"]: t["parameters"]["properties"] for t in updated["session"]["tools"]}
        assert listed["emote"]["gesture"]["enum"] == ["wave", "bow", "shrug"] and "stool" in listed["sit"]["seat"]["enum"]
        await conn.send({"type": "session.update", "event_id": "evt_tool", "session": {"type": "realtime", "tools": [
            {"type": "function", "name": "Jump Around", "parameters": {}}]}})
        error = as_dict(await asyncio.wait_for(conn.recv(), 10))
        assert error["error"]["code"] == "invalid_value" and error["error"]["param"] == "session.tools.0"
        await say(conn, "Take a seat, please.")
        events = await collect(conn)
    calls = function_calls(events)
    assert [(c["name"], c["arguments"]) for c in calls] == [("emote", {"gesture": "bow"}), ("sit", {"seat": "stool"})]


async def test_text_only_session_streams_text_and_usage(scripted: tuple[NpcServer, Recording]) -> None:
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"output_modalities": ["text"], "npc": {"scene": SCENE}})
        await say(conn, "What ramen do you have?")
        events = await collect(conn)
    assert not of(events, "response.output_audio.delta")
    text = "".join(e["delta"] for e in of(events, "response.output_text.delta"))
    assert text == of(events, "response.output_text.done")[0]["text"]
    assert text.startswith("Tonight I recommend the tonkotsu.")
    done = of(events, "response.done")[0]["response"]
    assert done["output_modalities"] == ["text"] and done["usage"]["output_tokens"] >= 0


async def test_cancel_ends_the_response_cancelled_and_a_cancel_with_nothing_running_is_an_error(
        scripted: tuple[NpcServer, Recording]) -> None:
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}})
        await say(conn, STORY)
        events = await collect(conn, until="response.output_audio_transcript.delta")
        await conn.response.cancel()
        events += await collect(conn)
        done = of(events, "response.done")[0]["response"]
        assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
        said = of(events, "response.output_audio_transcript.done")[0]["transcript"]
        assert said and STORY_REPLY.startswith(said) and len(said) < len(STORY_REPLY)  # cut short, and only what was sent
        await conn.send({"type": "response.cancel", "event_id": "evt_cancel_nothing"})
        error = as_dict(await asyncio.wait_for(conn.recv(), 10))
        assert error["type"] == "error" and error["error"]["code"] == "response_cancel_not_active"
        assert error["error"]["event_id"] == "evt_cancel_nothing"
        await say(conn, CHOPSTICKS)  # the connection goes on
        check_text_turn(await collect(conn))


async def test_truncate_maps_to_what_the_player_heard(scripted: tuple[NpcServer, Recording]) -> None:
    """Playback stopped 400 ms into a long reply (cancelled), truncated there: the character remembers only the words
    of those 400 ms, and the next prompt has nothing said after them."""
    server, llm = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}})
        await say(conn, STORY)
        events = await collect(conn, until="response.output_audio.delta")
        events += await collect(conn, until="response.output_audio_transcript.delta", count=8)  # a few more words sent
        await conn.response.cancel()
        events += await collect(conn)
        item = next(i for i in of(events, "response.done")[0]["response"]["output"] if i["type"] == "message")
        sent = item["content"][0]["transcript"]
        await conn.conversation.item.truncate(item_id=item["id"], content_index=0, audio_end_ms=400)
        truncated = as_dict(await asyncio.wait_for(conn.recv(), 10))
        assert truncated["type"] == "conversation.item.truncated" and truncated["audio_end_ms"] == 400
        # past the end of the audio, an unknown item: standard errors
        await conn.send({"type": "conversation.item.truncate", "event_id": "evt_t2", "item_id": item["id"],
                         "content_index": 0, "audio_end_ms": 10_000_000})
        await conn.send({"type": "conversation.item.truncate", "event_id": "evt_t3", "item_id": "item_nope",
                         "content_index": 0, "audio_end_ms": 0})
        errors = [as_dict(await asyncio.wait_for(conn.recv(), 10)) for _ in range(2)]
        assert [(e["error"]["code"], e["error"]["event_id"]) for e in errors] == [("invalid_value", "evt_t2"), ("item_not_found", "evt_t3")]
        await say(conn, "What ramen do you have?")
        await collect(conn)
    prompt = llm.prompt()
    later_words = sent.split()[3:]  # 400 ms of FakeTTS (50 ms per character) is the first few characters
    assert sent and later_words and " ".join(later_words) not in prompt
    assert "What ramen do you have?" in prompt


async def test_voice_turn_with_server_vad_and_transcription(scripted: tuple[NpcServer, Recording]) -> None:
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}, "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": RATE}, "transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}})
        await send_audio(conn, silence(300, rate=RATE) + speech(900, rate=RATE) + silence(700, rate=RATE))
        events = await collect(conn)
    kinds = [e["type"] for e in events]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped") \
        < kinds.index("input_audio_buffer.committed") < kinds.index("conversation.item.input_audio_transcription.completed") \
        < kinds.index("response.created")
    started = of(events, "input_audio_buffer.speech_started")[0]
    assert 200 <= started["audio_start_ms"] <= 400
    item_id = started["item_id"]
    assert of(events, "input_audio_buffer.committed")[0]["item_id"] == item_id
    completed = of(events, "conversation.item.input_audio_transcription.completed")[0]
    assert completed["item_id"] == item_id and completed["transcript"] == CHOPSTICKS
    check_text_turn(events)
    assert [c["name"] for c in function_calls(events)] == ["give"]


async def test_talking_over_the_character_interrupts_it(scripted: tuple[NpcServer, Recording]) -> None:
    """Server VAD's interrupt_response: speech over a reply that is still playing (its audio lasts ~13 s) starts an
    utterance (speech_started: the client stops playback), and once it lasts the barge-in time the response is
    interrupted (npc.response.interrupted, or response.done cancelled with turn_detected if still generating); the
    utterance is answered."""
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}, "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}})
        await say(conn, STORY)
        events = await collect(conn, until="response.output_audio.delta")
        first = events[-1]["response_id"]
        await send_audio(conn, speech(900, rate=RATE) + silence(500, rate=RATE))
        events += await collect(conn, until="response.done", count=2, timeout=30)
    kinds = [e["type"] for e in events]
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.committed")
    interrupted = [e for e in of(events, "npc.response.interrupted") if e["response_id"] == first]
    done_first = next(e["response"] for e in of(events, "response.done") if e["response"]["id"] == first)
    assert interrupted or done_first["status_details"]["reason"] == "turn_detected"
    second = [e["response"] for e in of(events, "response.done") if e["response"]["id"] != first]
    assert len(second) == 1 and second[0]["status"] == "completed"


async def test_manual_commit_without_turn_detection(scripted: tuple[NpcServer, Recording]) -> None:
    """turn_detection null: the client commits. Nothing to commit is an error; after a commit, response.create asks
    for the utterance's response (one response, not two)."""
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}, "audio": {"input": {"turn_detection": None}}})
        await conn.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
        error = as_dict(await asyncio.wait_for(conn.recv(), 10))
        assert error["error"]["code"] == "input_audio_buffer_commit_empty" and error["error"]["event_id"] == "evt_empty"
        await send_audio(conn, speech(900, rate=RATE) + silence(300, rate=RATE))
        events = await collect(conn, until="input_audio_buffer.speech_started")
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events += await collect(conn)
        await asyncio.sleep(0.5)
        await say(conn, "What ramen do you have?")
        events += await collect(conn)
    assert len(of(events, "input_audio_buffer.committed")) == 1
    assert len(of(events, "response.created")) == 2  # the utterance's, then the typed line's


async def test_bad_input_gets_standard_errors_and_the_connection_stays(scripted: tuple[NpcServer, Recording]) -> None:
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}})
        await conn.send({"type": "no.such.event", "event_id": "evt_1"})
        await conn.send({"type": "input_audio_buffer.append", "event_id": "evt_2", "audio": "this is not base64!"})
        await conn.send({"type": "input_audio_buffer.append", "event_id": "evt_3", "audio": base64.b64encode(b"\x01\x02\x03").decode()})
        await conn.send({"type": "session.update", "event_id": "evt_4", "session": {
            "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
        await conn.send({"type": "session.update", "event_id": "evt_5", "session": {"type": "realtime", "input_audio_format": "g711_ulaw"}})
        await conn.send({"type": "conversation.item.create", "event_id": "evt_6", "item": {"type": "message", "role": "user",
                         "content": [{"type": "input_image", "image_url": "data:,"}]}})
        await conn.send({"type": "conversation.item.delete", "event_id": "evt_7", "item_id": "x"})
        await conn.send({"type": "response.create", "event_id": "evt_8", "response": {"output_modalities": "loud"}})
        await conn.send_raw("{not json")  # type: ignore[attr-defined]
        errors = [as_dict(await asyncio.wait_for(conn.recv(), 10)) for _ in range(9)]
        assert all(e["type"] == "error" for e in errors), errors
        got = [(e["error"]["code"], e["error"]["event_id"]) for e in errors]
        assert got == [("unknown_event_type", "evt_1"), ("invalid_base64", "evt_2"), ("bad_audio", "evt_3"),
                       ("unsupported_audio_format", "evt_4"), ("unsupported_audio_format", "evt_5"),
                       ("unsupported_content", "evt_6"), ("unsupported_event", "evt_7"), ("invalid_event", "evt_8"),
                       ("invalid_json", None)]
        assert all(e["error"]["type"] == "invalid_request_error" and e["error"]["message"] for e in errors)
        await say(conn, CHOPSTICKS)  # still talking
        check_text_turn(await collect(conn))


async def test_unknown_character_and_no_character(scripted: tuple[NpcServer, Recording]) -> None:
    server, _ = scripted
    async with connect(server, model="nobody") as conn:
        await conn.response.create()
        error = as_dict(await asyncio.wait_for(conn.recv(), 10))
        assert error["type"] == "error" and error["error"]["code"] == "unknown_character"
        updated = await configure(conn, {"model": "nova"})  # a session.update names a real persona: it starts
        assert updated["session"]["npc"]["character"]["id"] == "nova"
        await conn.send({"type": "session.update", "session": {"type": "realtime", "npc": {"character": "nobody"}}})
        error = as_dict(await asyncio.wait_for(conn.recv(), 10))
        assert error["error"]["code"] == "unknown_character"


async def test_game_event_as_a_system_message(scripted: tuple[NpcServer, Recording]) -> None:
    """A system message is a game event the character perceives; response.create after it makes it react."""
    server, llm = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}})
        await conn.conversation.item.create(item={"type": "message", "role": "system",
                                                  "content": [{"type": "input_text", "text": "Smoke pours out of the kitchen."}]})
        await conn.response.create()
        events = await collect(conn)
    assert of(events, "conversation.item.added")[0]["item"]["role"] == "system"
    assert of(events, "response.done")[0]["response"]["status"] == "completed"
    assert "Smoke pours out of the kitchen." in llm.prompt()


async def test_function_call_output_then_response_create_is_answered(scripted: tuple[NpcServer, Recording]) -> None:
    """What a standard tool loop does after a function call: send its output, ask for a response. The character has
    already spoken its line: the response is empty and completed (no error, no second reply)."""
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}})
        await say(conn, CHOPSTICKS)
        calls = function_calls(await collect(conn))
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "{\"ok\": true}"})
        await conn.response.create()
        events = await collect(conn)
    assert of(events, "conversation.item.added")[0]["item"]["type"] == "function_call_output"
    done = of(events, "response.done")[0]["response"]
    assert done["status"] == "completed" and done["output"] == []


async def test_the_sdk_beta_client_gets_the_beta_event_names(scripted: tuple[NpcServer, Recording]) -> None:
    """The SDK's retained beta interface (``client.beta.realtime``, ``OpenAI-Beta: realtime=v1``) and its shapes:
    flat session fields, ``response.audio.delta``, ``conversation.item.created``, content types ``audio``/``text``."""
    server, _ = scripted
    client = client_for(server)
    async with client.beta.realtime.connect(model="jin") as conn:
        assert as_dict(await conn.recv())["type"] == "session.created"
        await conn.send({"type": "session.update", "session": {"npc": {"scene": SCENE}, "input_audio_format": "pcm16",
                                                               "modalities": ["text", "audio"],
                                                               "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}}})
        assert as_dict(await asyncio.wait_for(conn.recv(), 30))["type"] == "session.updated"
        await say(conn, CHOPSTICKS)
        events = await collect(conn)
    await client.close()
    kinds = {e["type"] for e in events}
    assert {"conversation.item.created", "response.audio.delta", "response.audio_transcript.delta", "response.audio.done"} <= kinds
    assert not kinds & {"response.output_audio.delta", "conversation.item.added"}


async def test_the_native_protocol_on_the_same_port_is_untouched(scripted: tuple[NpcServer, Recording]) -> None:
    """A native client at ``/`` and a Realtime client at ``/v1/realtime``, at once on one server: each gets its own
    protocol (native events and binary audio frames; Realtime JSON only)."""
    from npc_runtime import protocol as p
    from npc_runtime.client import AudioFrame, NpcClient

    server, _ = scripted
    async with connect(server) as conn, NpcClient.connect(server.url) as native:
        ready = await native.start_session("jin", scene=SCENE)
        assert ready.type == "session.ready" and ready.audio is not None
        await configure(conn, {"npc": {"scene": SCENE}})
        await native.send(p.TextInput(text=CHOPSTICKS))
        await say(conn, CHOPSTICKS)
        native_events: list[Any] = []
        async with asyncio.timeout(30):
            async for event in native.events():
                native_events.append(event)
                if isinstance(event, p.ResponseEnd):
                    break
        realtime_events = await collect(conn)
    assert any(isinstance(e, AudioFrame) for e in native_events)
    end = native_events[-1]
    assert isinstance(end, p.ResponseEnd) and end.text == CHOPSTICKS_REPLY and end.actions[0].verb == "give"
    check_text_turn(realtime_events)


async def test_bench_compares_the_two_protocols_on_one_run(scripted: tuple[NpcServer, Recording], tmp_path: Path) -> None:
    """``npc bench --protocol both`` against a running server: native and realtime loads alternate, every turn is
    answered through each, and bench.json carries both reports and their comparison."""
    from npc_runtime.bench import bench_main
    from npc_runtime.settings import Settings

    server, _ = scripted
    code = await bench_main(clients=1, turns=2, mode="text", out=tmp_path, server=server.url, settings=Settings(),
                            protocol="both", rounds=1)
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert report["config"]["protocol"] == "both"
    for rows in (report["native"]["rows"], report["rows"]):
        assert [r["status"] for r in rows] == ["completed", "completed"]
        assert all(r["first_audio_ms"] and r["end_ms"] and r["server"]["end"] for r in rows)
    comparison = report["comparison"]
    assert set(comparison) == {"first_text", "first_audio", "end"}
    for stage in comparison.values():
        assert stage["ratio"] is not None and stage["ratio"] > 0
        assert 0 <= stage["realtime_overhead_p50"] < 500 and 0 <= stage["native_overhead_p50"] < 500
    assert (tmp_path / "bench.png").is_file() and (tmp_path / "bench-native.png").is_file()


async def test_session_settings_lock_once_the_conversation_starts_and_the_scene_can_change(
        scripted: tuple[NpcServer, Recording]) -> None:
    """Before anything is said a session.update restarts the session with new settings; after, the character and turn
    detection are locked (session_locked, the session goes on) while the scene may change (scene.update: new tools)."""
    server, _ = scripted
    async with connect(server) as conn:
        await configure(conn, {"npc": {"scene": SCENE}})
        updated = await configure(conn, {"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}}}})
        assert updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 900
        await say(conn, CHOPSTICKS)
        check_text_turn(await collect(conn))
        await conn.send({"type": "session.update", "event_id": "evt_lock", "session": {"type": "realtime", "model": "nova"}})
        error = as_dict(await asyncio.wait_for(conn.recv(), 10))
        assert error["error"]["code"] == "session_locked" and error["error"]["event_id"] == "evt_lock"
        smaller = {**SCENE, "characters": [c for c in SCENE["characters"] if c["id"] == "player"]}
        updated = await configure(conn, {"npc": {"scene": smaller}})
        give = next(t for t in updated["session"]["tools"] if t["name"] == "give")
        assert give["parameters"]["properties"]["target"]["enum"] == ["player"]
        assert updated["session"]["npc"]["character"]["id"] == "jin"
        await say(conn, CHOPSTICKS)
        check_text_turn(await collect(conn))


async def test_a_connection_that_names_no_character_is_closed_at_the_start_deadline(personas: PersonaRegistry) -> None:
    from websockets.exceptions import ConnectionClosed

    from npc_runtime.server import ConnectionLimits

    services = Services(personas=personas, dialogue=Dialogue(llm=ScriptedLLM.from_file(SCRIPT)))
    services.ready.set()
    server = NpcServer(services, host="127.0.0.1", port=0, limits=ConnectionLimits(start_timeout_s=0.5))
    await server.start()
    try:
        client = client_for(server)
        async with client.realtime.connect(max_retries=0) as conn:
            assert as_dict(await conn.recv())["type"] == "session.created"
            error = as_dict(await asyncio.wait_for(conn.recv(), 10))
            assert error["error"]["code"] == "start_timeout"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(conn.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        await client.close()
    finally:
        await server.aclose()


async def test_auth_applies_to_the_realtime_endpoint(personas: PersonaRegistry) -> None:
    """With API keys on, the SDK's Authorization: Bearer <key> is the credential: a good key talks, a bad one is
    refused at the handshake (HTTP 401)."""
    key = "rt-test-key-0123456789abcdef"
    services = Services(personas=personas, dialogue=Dialogue(llm=ScriptedLLM.from_file(SCRIPT)), tts=FakeTTS(sample_rate=22050))
    services.ready.set()
    server = NpcServer(services, host="127.0.0.1", port=0, access=Access(api_keys=frozenset({key})))
    await server.start()
    try:
        async with connect(server, api_key=key) as conn:
            await configure(conn, {"npc": {"scene": SCENE}})
            await say(conn, CHOPSTICKS)
            check_text_turn(await collect(conn))
        from websockets.exceptions import InvalidStatus
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server, api_key="wrong-key-0123456789abcdef"):
                pass
        assert refused.value.response.status_code == 401
    finally:
        await server.aclose()


NODE_RT = Path(os.environ.get("NPC_NODE_REALTIME", Path.home() / ".cache" / "npc_runtime" / "node_realtime"))


async def test_the_npm_openai_realtime_client_under_node(scripted: tuple[NpcServer, Recording], tmp_path: Path) -> None:
    """The npm ``openai`` package's realtime WebSocket client (``OpenAIRealtimeWS``, on ``ws``), pinned by
    tests/node_realtime/package-lock.json (scripts/setup_clients.sh installs it): a turn with audio, transcript and
    the action as a function call, then an unknown event answered by an ``error`` and another turn on the same
    connection. The SDK dials only wss://: the script puts a TLS-terminating proxy in front (as docs/security.md asks)."""
    from live_server import missing_toolchain

    node = shutil.which("node")
    if node is None or not (NODE_RT / "node_modules" / "openai").is_dir():
        missing_toolchain(f"node or the npm openai package ({NODE_RT}) is missing: scripts/setup_clients.sh installs them")
    assert node is not None
    server, _ = scripted
    (tmp_path / "node_modules").symlink_to(NODE_RT / "node_modules")
    script = tmp_path / "realtime_client.mjs"
    shutil.copy(ROOT / "tests" / "node_realtime" / "realtime_client.mjs", script)
    cert, key, scene = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "scene.json"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    scene.write_text(json.dumps(SCENE), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(node, str(script), str(server.port), str(cert), str(key), str(scene),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, (out.decode()[-2000:], err.decode()[-2000:])
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["seen"][0] == "session.created" and result["seen"].count("response.done") == 2
    assert result["transcript"] == CHOPSTICKS_REPLY and result["audioBytes"] > 0
    assert result["calls"] == [{"name": "give", "arguments": {"object": "chopsticks", "target": "player"}}] * 2
    assert [e["code"] for e in result["errors"]] == ["unknown_event_type"]


# --------------------------------------------------------------------------- real engines


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def real_engines(llama_engine: Any) -> AsyncIterator[NpcServer]:
    """SmolLM2 (llama.cpp, the tuned adapter's default prompt), espeak-ng, Silero VAD and faster-whisper tiny.en."""
    from npc_runtime.asr.vad import SileroVAD
    from npc_runtime.asr.whisper import WhisperASR
    from npc_runtime.tts.espeak import EspeakTTS

    asr, vad, tts = WhisperASR("tiny.en"), SileroVAD(), EspeakTTS(voice="en-us")
    for engine in (vad, asr, tts):
        await engine.warm()
    try:
        async with registry() as loaded:
            services = Services(personas=loaded, dialogue=Dialogue(llm=llama_engine), tts=tts, asr=asr, vad=vad)
            async with serving(services) as srv:
                yield srv
    finally:
        for engine in (asr, vad, tts):
            await engine.aclose()


@pytest.mark.engine
async def test_real_jin_by_text(real_engines: NpcServer) -> None:
    async with connect(real_engines) as conn:
        await configure(conn, {"npc": {"scene": SCENE, "seed": 7}})
        await say(conn, "Tell me about your ramen.")
        events = await collect(conn, timeout=180)
    response = check_text_turn(events)
    pcm = np.frombuffer(pcm_of(events, response["id"]), dtype="<i2")
    assert np.abs(pcm).max() > 1000, "the reply audio is silent"


@pytest.mark.engine
async def test_real_jin_by_voice_from_a_recording(real_engines: NpcServer) -> None:
    """JFK's recording, resampled to 24 kHz, streamed like a microphone (then silence): server VAD ends the turn,
    Whisper transcribes it, Jin answers."""
    from faster_whisper.audio import decode_audio

    from npc_runtime.asr.wer import wer

    audio = decode_audio(str(SHARED / "data" / "jfk.flac"), sampling_rate=RATE)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    async with connect(real_engines) as conn:
        await configure(conn, {"npc": {"scene": SCENE, "seed": 7}, "audio": {"input": {
            "transcription": {"model": "whisper-1"}, "turn_detection": {"type": "server_vad", "silence_duration_ms": 1500}}}})  # JFK pauses ~1.1 s
        sender = asyncio.create_task(send_audio(conn, pcm + bytes(RATE * 2 * 3), pace=0.5))
        try:
            events = await collect(conn, timeout=240)
        finally:
            await sender
    completed = of(events, "conversation.item.input_audio_transcription.completed")
    assert len(completed) == 1
    jfk = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country"
    assert wer(jfk, completed[0]["transcript"]) < 0.25, completed[0]["transcript"]
    assert of(events, "input_audio_buffer.committed")[0]["item_id"] == completed[0]["item_id"]
    check_text_turn(events)


@pytest.mark.engine
async def test_real_jin_acts_through_a_function_call(real_engines: NpcServer) -> None:
    """Asked for the chopsticks, the tuned model acts: a function_call item whose name is one of the session's tools
    and whose JSON arguments name what that tool declares (an entity of the scene). The words are not asserted; a
    couple of phrasings are tried."""
    async with connect(real_engines) as conn:
        updated = await configure(conn, {"npc": {"scene": SCENE, "seed": 7, "player": {"name": "Kai"}}})
        tools = {t["name"]: t["parameters"] for t in updated["session"]["tools"]}
        calls: list[dict[str, Any]] = []
        for line in ("Could you hand me the chopsticks?", "Please give me the chopsticks.", "Chopsticks, please!"):
            await say(conn, line)
            events = await collect(conn, timeout=180)
            assert of(events, "response.done")[0]["response"]["status"] == "completed"
            calls = function_calls(events)
            if calls:
                break
    assert calls, "no function call in three tries"
    entities = {e["id"] for kind in ("objects", "locations", "characters") for e in SCENE[kind]}
    for call in calls:
        assert call["name"] in tools
        params = tools[call["name"]]
        assert set(call["arguments"]) == set(params["required"])
        for name, value in call["arguments"].items():
            assert value in params["properties"][name]["enum"] and value in entities


def test_audio_resampling_keeps_the_duration() -> None:
    from npc_runtime.realtime.audio import OutputResampler

    tone = (np.sin(np.arange(22050) * 2 * math.pi * 440 / 22050) * 8000).astype("<i2").tobytes()
    resampler = OutputResampler(22050)
    out = b"".join(resampler.feed(tone[i:i + 4410]) for i in range(0, len(tone), 4410)) + resampler.flush()
    assert abs(len(out) // 2 - RATE) <= 2  # one second in, one second out
    assert OutputResampler(RATE).feed(b"\x01\x00") == b"\x01\x00"

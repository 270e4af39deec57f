"""Voice in over the real server with fake speech engines: end of turn, barge-in, backchannels, transcripts,
``input.audio.clear`` / ``commit``, failures.

A real server on 127.0.0.1:0 and a real websockets client (NpcClient), with the scripted LLM (FakeLLM), the
silent TTS (FakeTTS: 50 ms of audio per character) and the voice-input doubles of npc_runtime.asr.fake: FakeVAD
hears a 32 ms window as speech when it is loud (``speech()``: a sine; ``silence()``: zeros), FakeASR returns the
scripted transcript of each utterance. So these test the session's voice logic and run in seconds, the same
events every run — they never claim the engines work. Their twins on the real engines (Silero VAD, Whisper
tiny.en, espeak-ng, SmolLM2; marked ``engine``): tests/test_voice_in.py and the Listener tests of tests/test_asr.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from conftest import scene_dict
from server_fixture import personas, serving  # noqa: F401  (personas: a fixture)

from npc_runtime import protocol as p
from npc_runtime.asr.base import ASR, VAD
from npc_runtime.asr.endpoint import EndpointConfig, Endpointer
from npc_runtime.asr.fake import FakeASR, FakeVAD, silence, speech
from npc_runtime.client import AudioFrame, NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.errors import NpcError
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services
from npc_runtime.tts.fake import FakeTTS

RATE = 16000
STORY = ("Long ago, before the shop had a sign, my grandmother cooked broth in a single iron pot. "
         "Every morning she walked to the harbour for bones and kelp, and every night she tasted the pot "
         "until the flavour was deep enough to make a fisherman quiet. The recipe was never written down.")
HEARD_MS = 1500.0  # how much of the story the player hears before talking over it (the playback marks say so)


@asynccontextmanager
async def voice_server(personas: PersonaRegistry, *, llm: FakeLLM | None = None, asr: FakeASR | None = None,
                       vad: FakeVAD | None = None, **extra: Any) -> AsyncIterator[NpcServer]:
    services = Services(personas=personas, dialogue=Dialogue(llm=llm or FakeLLM(["Ah, the pot. It is older than me."])),
                        tts=FakeTTS(), asr=asr or FakeASR(), vad=vad or FakeVAD(), **extra)
    async with serving(services) as server:
        yield server


async def mic(client: NpcClient, pcm: bytes, *, rate: int = RATE, realtime: bool = True) -> None:
    """A live microphone: ``pcm`` in 20 ms frames, then silence until cancelled."""
    await client.stream_audio(pcm, sample_rate=rate, realtime=realtime)
    while True:
        await client.stream_audio(silence(200, rate=rate), sample_rate=rate, realtime=True)


async def until(client: NpcClient, done: Callable[[Any, list[Any]], bool], *, timeout: float = 20.0) -> list[Any]:
    """Events (audio frames left out) up to and including the first one for which ``done(event, events)``."""
    events: list[Any] = []
    async with asyncio.timeout(timeout):
        async for event in client.events():
            if isinstance(event, AudioFrame):
                continue
            events.append(event)
            if done(event, events):
                return events
    raise AssertionError("the connection closed")


def response_end(event: Any, _: list[Any]) -> bool:
    return isinstance(event, p.ResponseEnd)


def kinds(events: list[Any]) -> list[str]:
    return [e.type for e in events if not isinstance(e, AudioFrame)]


def words_of(text: str) -> list[str]:
    return [w.strip(".,!?;:").lower() for w in text.split()]


async def stop(task: asyncio.Task[Any] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_fakes_satisfy_the_protocols_and_load_no_engine() -> None:
    assert isinstance(FakeVAD(), VAD) and isinstance(FakeASR(), ASR)
    code = ("import sys, npc_runtime.asr.fake, npc_runtime.session; "
            "print([m for m in ('av', 'onnxruntime', 'faster_whisper', 'ctranslate2', 'npc_runtime.asr.vad', "
            "'npc_runtime.asr.whisper') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "error"})
    assert out.stdout.strip() == "[]"
    code = ("import sys, npc_runtime.asr, npc_runtime.asr.vad, npc_runtime.asr.whisper, npc_runtime.wiring; "
            "print('npc_runtime.asr.fake' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # the runtime and the engines never import the fakes


async def test_the_listener_says_once_when_the_voice_has_lasted_barge_in_ms() -> None:
    """Barge-in is driven by the listener's events (no polling): ``SpeechLasted`` comes once per utterance, after its
    ``SpeechStarted`` and before its ``SpeechStopped``, when the voice (not the silence after it) reaches ``lasted_ms``;
    a shorter utterance gets none; without ``lasted_ms`` there is none."""
    from npc_runtime.asr.listener import ListenConfig, Listener, SpeechLasted

    async def events_of(pcm: bytes, lasted_ms: float | None) -> list[Any]:
        listener = Listener(asr=FakeASR(["a", "b"]), vad=FakeVAD(), config=ListenConfig(partials=False, lasted_ms=lasted_ms))
        for offset in range(0, len(pcm), 640):
            listener.feed(pcm[offset:offset + 640])
        listener.commit()
        await listener.drain()
        out: list[Any] = []
        async with asyncio.timeout(5):
            async for event in listener.events():
                out.append(event)
                if type(event).__name__ == "TranscriptFinal":
                    break
        await listener.aclose()
        return out

    long = await events_of(silence(200) + speech(900) + silence(900), 500)
    names = [type(e).__name__ for e in long]
    assert names == ["SpeechStarted", "SpeechLasted", "SpeechStopped", "TranscriptFinal"]
    lasted = long[1]
    assert isinstance(lasted, SpeechLasted) and lasted.utterance_id == long[0].utterance_id and 500 <= lasted.voiced_ms < 600
    short = await events_of(silence(200) + speech(300) + silence(900), 500)
    assert "SpeechLasted" not in [type(e).__name__ for e in short]
    assert "SpeechLasted" not in [type(e).__name__ for e in await events_of(silence(200) + speech(900) + silence(900), None)]


@pytest.mark.parametrize(("final_busy", "yield_", "partials_expected"), [(0, True, True), (1, True, False), (1, False, True)],
                         ids=["finals-idle", "finals-busy", "finals-busy-no-yield"])
async def test_partials_yield_to_finals(final_busy: int, yield_: bool, partials_expected: bool) -> None:
    """While the final recogniser has a decode queued or running (``extra_pending``: another session's final), no
    partial starts on the partial recogniser; the utterance's own final still comes (issue 18)."""
    from npc_runtime.asr.listener import ListenConfig, Listener

    final, partial = FakeASR(["One two three four five six."], extra_pending=final_busy), FakeASR(["One two three four five six."])
    listener = Listener(asr=final, vad=FakeVAD(), partial_asr=partial,
                        config=ListenConfig(partials=True, partial_interval_ms=200, partials_yield=yield_,
                                            max_decodes_waiting=8))
    pcm = silence(200) + speech(2000) + silence(900)
    names: list[str] = []

    async def consume() -> None:
        async for event in listener.events():
            names.append(type(event).__name__)
            if names[-1] == "TranscriptFinal":
                return

    consumer = asyncio.create_task(consume())
    for offset in range(0, len(pcm), 640):
        listener.feed(pcm[offset:offset + 640])
        await asyncio.sleep(0)  # let the listener process as a live microphone would
    listener.commit()
    async with asyncio.timeout(5):
        await consumer
    await listener.aclose()
    assert names[-1] == "TranscriptFinal"
    assert any(p for p, _ in partial.decodes) is partials_expected, (partial.decodes, names)


def test_voiced_ms_leaves_out_the_silence_after_the_voice() -> None:
    """What the barge-in watch measures: the voice so far (a pause inside counts), not the silence that follows it."""
    ep = Endpointer(EndpointConfig(start_ms=30, end_silence_ms=100, min_speech_ms=50, speculative_ms=40), window_ms=10.0)
    for prob in [0.9] * 5:
        ep.push(prob)
    assert ep.voiced_ms() == ep.speech_ms() == 50.0
    for prob in [0.0] * 6:
        ep.push(prob)
    assert (ep.voiced_ms(), ep.speech_ms()) == (50.0, 110.0)
    for prob in [0.9] * 2:
        ep.push(prob)
    assert ep.voiced_ms() == ep.speech_ms() == 130.0
    for prob in [0.0] * 10:
        ep.push(prob)
    assert ep.voiced_ms() == ep.speech_ms() == 0.0 and not ep.in_utterance


# -- end of turn ------------------------------------------------------------------------------


async def test_end_of_turn_by_silence_gives_partials_the_transcript_and_a_reply(personas: PersonaRegistry) -> None:
    """Twin of test_voice_in.py::test_jfk_recording_gives_the_transcript_and_a_reply (and test_asr.py's
    test_listener_jfk_16k): speech, then silence, streamed like a microphone."""
    said = "Tell me about the pot on the stove."
    llm, asr = FakeLLM(["Ah, the pot. It is older than me."]), FakeASR([said])
    async with voice_server(personas, llm=llm, asr=asr) as server, NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"), options={"listen": {"end_silence_ms": 800}})
        assert ready.audio_in is not None and ready.audio_in.sample_rate == RATE
        assert ready.listen == p.ListenSettings(end_silence_ms=800, barge_in_ms=500, partials=True)
        sender = asyncio.create_task(mic(client, silence(300) + speech(1400)))
        try:
            events = await until(client, response_end)
        finally:
            await stop(sender)
        history = list(next(iter(server.sessions)).character.history)
    seq = kinds(events)
    assert seq.index("speech.started") < seq.index("speech.stopped") < seq.index("transcript.final") < seq.index("response.start")
    started = next(e for e in events if isinstance(e, p.SpeechStarted))
    stopped = next(e for e in events if isinstance(e, p.SpeechStopped))
    # where the voice starts and stops, to a 32 ms window
    assert (started.utterance_id, stopped.utterance_id) == ("u1", "u1")
    assert 300 - 32 <= started.at_ms <= 300 and 1700 <= stopped.at_ms <= 1700 + 32 and not stopped.discarded
    assert stopped.duration_ms == pytest.approx(1400, abs=64)
    partials = [e for e in events if isinstance(e, p.TranscriptPartial)]
    assert partials, "no partial transcript while the player spoke"
    assert all(e.utterance_id == "u1" and said.startswith(e.text) and e.text.startswith(e.stable) for e in partials)
    for before, after in itertools.pairwise(partials):
        assert after.stable.startswith(before.stable), "stable words changed"
    assert seq.index("transcript.partial") < seq.index("speech.stopped")
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert (final.utterance_id, final.text, final.backchannel) == ("u1", said, False)
    assert final.timings["duration_ms"] == stopped.duration_ms and final.timings["speculative_hit"] == 1.0
    assert final.timings["final_ms"] >= 700  # the end of turn waited for 800 ms of silence (to a window)
    start = next(e for e in events if isinstance(e, p.ResponseStart))
    assert (start.trigger, start.ref) == ("voice", "u1")
    end = events[-1]
    assert isinstance(end, p.ResponseEnd) and end.status == "completed" and end.text == "Ah, the pot. It is older than me."
    assert any(isinstance(e, p.AudioChunkEvent) for e in events), "the reply was not spoken"
    # The voice turn's timeline starts where the player's voice ended.
    assert 700 <= end.timings["transcript_final"] <= end.timings["first_audio"] <= end.timings["end"]
    assert said in " ".join(m.content for m in llm.requests[-1].messages)
    assert [(h.kind, h.text) for h in history[:1]] == [("player", said)]


async def test_end_of_turn_by_commit(personas: PersonaRegistry) -> None:
    """Push-to-talk: ``input.audio.commit`` ends the utterance at once, however short, with no silence after it
    (twin of test_asr.py::test_listener_commit_mid_speech). A commit with no utterance does nothing."""
    asr = FakeASR(["Chopsticks, please.", "Two bowls."])
    async with voice_server(personas, asr=asr) as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"), options={"listen": {"end_silence_ms": 2000}})
        await client.commit_audio()  # nothing to end
        await client.stream_audio(silence(200) + speech(1000), sample_rate=RATE, realtime=False)
        await client.commit_audio()
        events = await until(client, response_end)
        await client.playback_mark(events[-1].response_id, events[-1].audio_ms)  # played out: not talking over it
        # a short one (under min_speech_ms, which would be discarded as noise at a silence) still counts
        await client.stream_audio(speech(160), sample_rate=RATE, realtime=False)
        await client.commit_audio()
        second = await until(client, response_end)
    assert [k for k in kinds(events) if k != "transcript.partial"][:4] == [
        "speech.started", "speech.stopped", "transcript.final", "response.start"]
    stopped = next(e for e in events if isinstance(e, p.SpeechStopped))
    assert not stopped.discarded and stopped.duration_ms == pytest.approx(1000, abs=64)
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert (final.utterance_id, final.text) == ("u1", "Chopsticks, please.")
    assert final.timings["speculative_hit"] == 0.0  # no pause: decoded at the commit
    assert events[-1].status == "completed"
    assert not any(isinstance(e, p.ErrorEvent) for e in events + second)
    stopped = next(e for e in second if isinstance(e, p.SpeechStopped))
    assert stopped.utterance_id == "u2" and not stopped.discarded and stopped.duration_ms < 250
    assert next(e for e in second if isinstance(e, p.TranscriptFinal)).text == "Two bowls."
    assert asr.finals == 2


async def test_partials_can_be_turned_off(personas: PersonaRegistry) -> None:
    asr = FakeASR(["One two three four five six seven."])
    async with voice_server(personas, asr=asr) as server, NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", options={"listen": {"partials": False}, "text_only": True})
        assert ready.listen is not None and not ready.listen.partials
        sender = asyncio.create_task(mic(client, speech(1500)))
        try:
            events = await until(client, response_end)
        finally:
            await stop(sender)
    assert "transcript.partial" not in kinds(events)
    assert asr.decodes and not any(partial for partial, _ in asr.decodes)  # not even decoded


async def test_noise_and_an_empty_transcript_start_no_response(personas: PersonaRegistry) -> None:
    """A click shorter than min_speech_ms (250) is discarded: speech.stopped(discarded), no transcript. An
    utterance the recogniser makes nothing of gets an empty transcript.final and no response."""
    asr = FakeASR(["", "Hello?"])
    async with voice_server(personas, asr=asr) as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"text_only": True})
        pcm = speech(150) + silence(700) + speech(600) + silence(700) + speech(600) + silence(700)
        await client.stream_audio(pcm, sample_rate=RATE, realtime=False)
        events = await until(client, response_end)
    assert [(e.type, e.utterance_id) for e in events if isinstance(e, (p.SpeechStopped, p.TranscriptFinal))] == [
        ("speech.stopped", "u1"), ("speech.stopped", "u2"), ("transcript.final", "u2"),
        ("speech.stopped", "u3"), ("transcript.final", "u3")]
    stopped = [e for e in events if isinstance(e, p.SpeechStopped)]
    assert [s.discarded for s in stopped] == [True, False, False]
    finals = [e for e in events if isinstance(e, p.TranscriptFinal)]
    assert [f.text for f in finals] == ["", "Hello?"]
    assert [e.ref for e in events if isinstance(e, p.ResponseStart)] == ["u3"]  # only the last one is answered


async def test_clear_drops_the_utterance_in_progress(personas: PersonaRegistry) -> None:
    """``input.audio.clear`` (twin of test_asr.py::test_listener_clear_drops_the_utterance): the utterance in
    progress ends discarded, with no transcript and no response; the next one is heard as usual."""
    asr = FakeASR(["Never mind. What is on the menu?"], partials=False)
    async with voice_server(personas, asr=asr) as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"text_only": True})
        await client.stream_audio(speech(600), sample_rate=RATE, realtime=False)
        first = await until(client, lambda e, _: isinstance(e, p.SpeechStarted))
        await client.send(p.AudioClear())
        await client.stream_audio(silence(700) + speech(800) + silence(700), sample_rate=RATE, realtime=False)
        events = first + await until(client, response_end)
    stopped = [e for e in events if isinstance(e, p.SpeechStopped)]
    assert [(s.utterance_id, s.discarded) for s in stopped] == [("u1", True), ("u2", False)]
    finals = [e for e in events if isinstance(e, p.TranscriptFinal)]
    assert [(f.utterance_id, f.text) for f in finals] == [("u2", "Never mind. What is on the menu?")]
    assert [e.ref for e in events if isinstance(e, p.ResponseStart)] == ["u2"]
    started = [e for e in events if isinstance(e, p.SpeechStarted)]
    assert started[1].at_ms >= 600 + 700 - 32  # the microphone's timeline goes on across the clear
    assert asr.finals == 1


# -- barge-in and backchannels ----------------------------------------------------------------


def story_server(personas: PersonaRegistry, token_delay: float,
                 asr: FakeASR | None = None) -> tuple[AbstractAsyncContextManager[NpcServer], FakeLLM]:
    """A server whose character tells a long story (16 s of audio), then answers; and its LLM."""
    llm = FakeLLM([STORY, "Of course. Ask me anything."], token_delay=token_delay)
    return voice_server(personas, llm=llm, asr=asr or FakeASR(["Wait, what about the broth?"])), llm


@pytest.mark.parametrize("token_delay", [0.0, 0.1], ids=["while-playing", "while-generating"])
async def test_barge_in_stops_the_reply_and_history_keeps_only_what_was_heard(
        personas: PersonaRegistry, token_delay: float) -> None:
    """Twin of test_voice_in.py's test of the same name. A fast model has finished the reply long before its
    audio is played: the barge-in stops playback. A slow one is still generating: it stops generation and
    synthesis too. The client's playback marks say the player heard the first 1.5 s."""
    served, llm = story_server(personas, token_delay)
    async with served as server, NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"))
        assert ready.audio is not None and ready.listen is not None and ready.listen.barge_in_ms == 500
        await client.send(p.TextInput(text="Tell me the story of the shop."))
        reply: str | None = None
        sender: asyncio.Task[None] | None = None

        def done(event: Any, _: list[Any]) -> bool:
            return isinstance(event, p.ResponseEnd) and event.response_id != reply  # the reply to what the player said

        events: list[Any] = []
        try:
            async with asyncio.timeout(30):
                async for event in client.events():
                    if isinstance(event, AudioFrame):
                        continue
                    events.append(event)
                    if isinstance(event, p.AudioChunkEvent):
                        reply = reply or event.response_id  # the story's (later chunks may be the next reply's)
                        received_ms = event.start_ms + event.samples * 1000 / ready.audio.sample_rate
                        if sender is None and event.response_id == reply and received_ms >= HEARD_MS:
                            await client.playback_mark(reply, HEARD_MS - 500)
                            sender = asyncio.create_task(mic(client, speech(900)))  # the player talks over it
                    if isinstance(event, p.ResponseInterrupted):
                        assert reply is not None
                        await client.playback_mark(reply, HEARD_MS)  # playback stopped there
                    if done(event, events):
                        break
        finally:
            await stop(sender)
        history = list(next(iter(server.sessions)).character.history)
    seq = kinds(events)
    first_end = next(e for e in events if isinstance(e, p.ResponseEnd))
    interrupted = [e for e in events if isinstance(e, p.ResponseInterrupted)]
    assert len(interrupted) == 1 and interrupted[0].response_id == first_end.response_id == reply
    if token_delay:
        assert seq.index("speech.started") < seq.index("response.interrupted") < seq.index("response.end")
        assert first_end.status == "interrupted"
        # Generation and synthesis stopped: far fewer words sent than the story has.
        assert len(words_of(first_end.text)) < len(words_of(STORY)) - 10
        assert llm.stopped_early >= 1
    else:
        assert first_end.status == "completed" and seq.index("response.end") < seq.index("speech.started")
        assert seq.index("speech.started") < seq.index("response.interrupted")
    # What the character is remembered to have said: the words heard in 1.5 s, a strict prefix of the story.
    heard = next(h.text for h in history if h.kind == "character")
    assert words_of(STORY)[: len(words_of(heard))] == words_of(heard), heard
    assert len(words_of(heard)) < len(words_of(first_end.text)), "history holds everything sent, not what was heard"
    # FakeTTS: 50 ms a character — "had" ends at 29 characters (1450 ms), " a" at 31 (1550 ms: not heard)
    assert heard == "Long ago, before the shop had", heard
    # The player's words started the next response, whose prompt carries only the heard part.
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert final.text == "Wait, what about the broth?" and not final.backchannel
    start = [e for e in events if isinstance(e, p.ResponseStart)][-1]
    assert (start.trigger, start.ref) == ("voice", final.utterance_id)
    prompt = " ".join(m.content for m in llm.requests[-1].messages)
    assert heard in prompt and STORY not in prompt
    assert [h.kind for h in history] == ["player", "character", "player", "character"]


async def test_barge_in_over_a_cast_member_keeps_what_the_player_heard_of_its_reply(personas: PersonaRegistry) -> None:
    """The same over a cast member (session.start cast; the player speaks to Nova): the barge-in stops Nova's
    playback, and the playback marks of Nova's response cut Nova's own history to what was heard."""
    served, _ = story_server(personas, 0.0)
    async with served as server, NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"), cast=["nova"])
        assert ready.audio is not None and [c.id for c in ready.cast] == ["nova"]
        await client.send(p.TextInput(text="Nova, tell me the story of the shop.", to="nova"))
        reply: str | None = None
        sender: asyncio.Task[None] | None = None
        events: list[Any] = []
        try:
            async with asyncio.timeout(30):
                async for event in client.events():
                    if isinstance(event, AudioFrame):
                        continue
                    events.append(event)
                    if isinstance(event, p.AudioChunkEvent) and event.speaker == "nova":
                        reply = reply or event.response_id
                        received_ms = event.start_ms + event.samples * 1000 / ready.audio.sample_rate
                        if sender is None and event.response_id == reply and received_ms >= HEARD_MS:
                            sender = asyncio.create_task(mic(client, speech(900)))
                    if isinstance(event, p.ResponseInterrupted):
                        assert reply is not None and event.speaker == "nova"
                        await client.playback_mark(reply, HEARD_MS)
                    if isinstance(event, p.ResponseEnd) and event.response_id != reply:
                        break
        finally:
            await stop(sender)
        session = next(iter(server.sessions))
        nova, jin = session.cast["nova"].history, session.character.history
    assert sum(isinstance(e, p.ResponseInterrupted) for e in events) == 1
    assert next(e for e in events if isinstance(e, p.ResponseEnd)).speaker == "nova"
    heard = next(h.text for h in nova if h.kind == "character")
    assert heard == "Long ago, before the shop had", heard  # Nova's history: only what was heard
    assert not any(h.kind == "character" for h in jin[:2])  # Jin only perceived it (an event), he did not say it


@pytest.mark.parametrize("token_delay", [0.0, 0.1], ids=["finished", "generating"])
async def test_a_client_that_stops_playback_on_its_own_cuts_the_history_there(personas: PersonaRegistry,
                                                                              token_delay: float) -> None:
    """playback.mark with stopped: true (a skip button; the Realtime endpoint's conversation.item.truncate): no
    barge-in, yet the character remembers only what was heard — of a reply that had finished and was only playing,
    and of one still being generated, which stops (interrupted)."""
    served, llm = story_server(personas, token_delay)
    async with served as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"))
        await client.send(p.TextInput(text="Tell me the story of the shop."))
        events = await until(client, lambda e, _: isinstance(e, p.ResponseEnd) or (
            token_delay > 0 and isinstance(e, p.AudioChunkEvent) and e.start_ms >= HEARD_MS))
        reply = events[0].response_id
        await client.playback_mark(reply, HEARD_MS, stopped=True)
        if token_delay:
            events = await until(client, response_end)
            assert events[-1].status == "interrupted" and len(words_of(events[-1].text)) < len(words_of(STORY)) - 10
        else:
            assert events[-1].status == "completed" and events[-1].text == STORY
        replies = [e async for e in client.say("Go on.")]
        assert replies[-1].status == "completed"
        history = list(next(iter(server.sessions)).character.history)
    assert [h.text for h in history if h.kind == "character"][0] == "Long ago, before the shop had"
    prompt = " ".join(m.content for m in llm.requests[-1].messages)
    assert "Long ago, before the shop had" in prompt and STORY not in prompt


async def test_a_backchannel_does_not_interrupt(personas: PersonaRegistry) -> None:
    """Twin of test_voice_in.py's test of the same name (at espeak's rate, 22050 Hz: the audio is resampled):
    speech over the character shorter than barge_in_ms is a backchannel: no interruption, a final marked
    backchannel, no response to it."""
    served, llm = story_server(personas, 0.03, asr=FakeASR(["Uh huh."]))
    uh_huh_ms, rate = 400, 22050
    async with served as server, NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"), options={
            "audio_in": {"sample_rate": rate}, "listen": {"barge_in_ms": 1200}})
        assert ready.listen is not None and ready.listen.barge_in_ms == 1200 and uh_huh_ms < 1200
        await client.send(p.TextInput(text="Tell me the story of the shop."))
        sender: asyncio.Task[None] | None = None

        def done(event: Any, events: list[Any]) -> bool:
            nonlocal sender
            if isinstance(event, p.AudioChunkEvent) and sender is None:
                sender = asyncio.create_task(mic(client, speech(uh_huh_ms, rate=rate), rate=rate))
            return (any(isinstance(e, p.ResponseEnd) for e in events)
                    and any(isinstance(e, p.TranscriptFinal) for e in events))

        try:
            events = await until(client, done)
        finally:
            await stop(sender)
        history = list(next(iter(server.sessions)).character.history)
    end = next(e for e in events if isinstance(e, p.ResponseEnd))
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert end.status == "completed" and end.text.strip() == STORY
    assert final.backchannel and final.text == "Uh huh." and not any(isinstance(e, p.ResponseInterrupted) for e in events)
    assert "speech.started" in kinds(events)
    stopped = next(e for e in events if isinstance(e, p.SpeechStopped))
    assert stopped.duration_ms == pytest.approx(uh_huh_ms, abs=64) and not stopped.discarded
    assert len(llm.requests) == 1 and [h.kind for h in history] == ["player", "character"]  # no reply, not in history


@pytest.mark.parametrize("voice_ms", [300, 450])
async def test_a_backchannel_under_the_persona_defaults(personas: PersonaRegistry, voice_ms: int) -> None:
    """The persona defaults (barge_in_ms 500, end_silence_ms 500): an "mm" of voice shorter than barge_in_ms
    is a backchannel — the silence after it (on its way to the end of the turn) is not speech over the
    character."""
    served, llm = story_server(personas, 0.0, asr=FakeASR(["Mm."]))
    async with served as server, NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin")
        assert ready.listen is not None and (ready.listen.barge_in_ms, ready.listen.end_silence_ms) == (500, 500)
        events = [e async for e in client.say("Tell me the story of the shop.")]
        await client.playback_mark(events[-1].response_id, 1000)  # 16 s of it still to play
        sender = asyncio.create_task(mic(client, speech(voice_ms)))
        try:
            events = await until(client, lambda e, _: isinstance(e, p.TranscriptFinal))
        finally:
            await stop(sender)
    assert events[-1].backchannel and events[-1].text == "Mm."
    assert not any(isinstance(e, p.ResponseInterrupted) for e in events) and len(llm.requests) == 1


async def test_speech_after_the_playback_ended_is_a_new_turn(personas: PersonaRegistry) -> None:
    """The reply's audio has played out (the last playback mark is at its end): the player's speech neither
    barges in nor is a backchannel, however short."""
    served, llm = story_server(personas, 0.0, asr=FakeASR(["Yes."]))
    async with served as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"listen": {"barge_in_ms": 1200}})
        events = [e async for e in client.say("Tell me the story of the shop.")]
        await client.playback_mark(events[-1].response_id, events[-1].audio_ms)
        await client.stream_audio(speech(400) + silence(700), sample_rate=RATE, realtime=False)
        events = await until(client, response_end)
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert not final.backchannel and not any(isinstance(e, p.ResponseInterrupted) for e in events)
    assert events[-1].status == "completed" and len(llm.requests) == 2


async def test_a_burst_of_speech_longer_than_barge_in_ms_barges_in(personas: PersonaRegistry) -> None:
    """Audio that reaches the server in a burst (a stalled network, a busy server: the listener takes up to 1 s
    of queued audio at once) — speech.started and speech.stopped then come together. Speech over the character
    that lasted barge_in_ms still barges in; it is not a backchannel (whose words would be dropped)."""
    served, llm = story_server(personas, 0.0)
    async with served as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"listen": {"barge_in_ms": 300, "end_silence_ms": 300}})
        events = [e async for e in client.say("Tell me the story of the shop.")]
        reply = events[-1].response_id
        await client.playback_mark(reply, 1000)
        await client.send_audio(speech(500) + silence(400))  # one frame
        events = await until(client, lambda e, _: isinstance(e, (p.ResponseEnd, p.TranscriptFinal)))
        if isinstance(events[-1], p.TranscriptFinal):
            events += await until(client, response_end, timeout=5)
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert not final.backchannel
    assert [e.response_id for e in events if isinstance(e, p.ResponseInterrupted)] == [reply]
    assert events[-1].response_id != reply and events[-1].status == "completed" and len(llm.requests) == 2


# -- failures and bad input -------------------------------------------------------------------


async def test_a_failing_recogniser_is_reported_and_the_session_goes_on(personas: PersonaRegistry) -> None:
    """Twin of test_voice_in.py's test of the same name: asr_failed (not fatal), text input still answered,
    and the session listens again — once the recogniser works, voice works."""
    asr = FakeASR(["Can you hear me now?"], fail_with=NpcError("the decoder crashed", code="asr_failed"))
    llm = FakeLLM(["Pardon?"])
    async with voice_server(personas, llm=llm, asr=asr) as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"text_only": True})
        await client.stream_audio(speech(800) + silence(700), sample_rate=RATE, realtime=False)
        events = await until(client, lambda e, _: isinstance(e, p.ErrorEvent))
        error = events[-1]
        assert (error.code, error.fatal, error.retryable) == ("asr_failed", False, False)
        assert "transcript.final" not in kinds(events)
        replies = [e async for e in client.say("Can you hear me?")]
        assert replies[-1].status == "completed" and replies[-1].text == "Pardon?"
        assert next(iter(server.sessions)).voice is not None  # listening again
        asr.fail_with = None
        await client.stream_audio(speech(800) + silence(700), sample_rate=RATE, realtime=False)
        events = await until(client, response_end)
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert final.text == "Can you hear me now?" and final.utterance_id == "u1"  # a fresh listener
    assert events[-1].status == "completed" and not any(isinstance(e, p.ErrorEvent) for e in events)


async def test_a_failing_vad_is_reported_and_the_session_goes_on(personas: PersonaRegistry) -> None:
    vad = FakeVAD(fail_with=NpcError("the VAD broke", code="asr_failed"))
    async with voice_server(personas, vad=vad, asr=FakeASR(["Hello there."])) as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"text_only": True})
        await client.stream_audio(speech(1000), sample_rate=RATE, realtime=False)
        events = await until(client, lambda e, _: isinstance(e, p.ErrorEvent))
        assert (events[-1].code, events[-1].fatal) == ("asr_failed", False)
        vad.fail_with = None
        await client.stream_audio(speech(800) + silence(700), sample_rate=RATE, realtime=False)
        events = await until(client, response_end)
    assert next(e for e in events if isinstance(e, p.TranscriptFinal)).text == "Hello there."
    assert events[-1].status == "completed"


async def test_an_utterance_is_refused_when_recognition_is_over_capacity(personas: PersonaRegistry) -> None:
    """Other sessions' decodes fill the recogniser's queue (Services.asr_max_waiting): the utterance is refused
    with ``busy`` (retryable, ref: the utterance) after its speech.stopped — no decode, no transcript (twin of
    test_asr.py::test_listener_refuses_an_utterance_when_recognition_is_over_capacity). Then it is heard again."""
    asr = FakeASR(["One more time: the menu?"], extra_pending=2)
    async with voice_server(personas, asr=asr, asr_max_waiting=2) as server, NpcClient.connect(server.url) as client:
        await client.start_session("jin", options={"text_only": True, "listen": {"partials": False}})
        await client.stream_audio(speech(800) + silence(700), sample_rate=RATE, realtime=False)
        events = await until(client, lambda e, _: isinstance(e, p.ErrorEvent))
        assert kinds(events) == ["speech.started", "speech.stopped", "error"]
        assert (events[-1].code, events[-1].retryable, events[-1].ref) == ("busy", True, "u1")
        assert asr.decodes == []  # not even a speculative decode
        asr.extra_pending = 0
        await client.stream_audio(speech(800) + silence(700), sample_rate=RATE, realtime=False)
        events = await until(client, response_end)
    assert next(e for e in events if isinstance(e, p.TranscriptFinal)).text == "One more time: the menu?"


async def test_bad_audio_gets_errors_and_the_session_goes_on(personas: PersonaRegistry) -> None:
    """Twin of test_voice_in.py's test of the same name (there on the real engines' server)."""
    async with voice_server(personas, llm=FakeLLM(["Here."])) as server, NpcClient.connect(server.url) as client:
        await client.send_audio(bytes(640))
        assert (await client.recv(timeout=5)).code == "no_session"
        await client.send_raw('{"type": "session.start", "character": "jin", "options": {"audio_in": {"sample_rate": 4000}}}')
        assert (await client.recv(timeout=5)).code == "invalid_message"
        await client.start_session("jin", scene=scene_dict("ramen_shop.json"), options={"text_only": True})
        for frame, code in ((bytes(641), "bad_audio"), (bytes(p.MAX_AUDIO_FRAME_BYTES + 2), "audio_frame_too_large")):
            await client.send_audio(frame)
            event = await client.recv(timeout=5)
            assert (event.type, event.code, event.fatal) == ("error", code, False)
        await client.send(p.PlaybackMark(response_id="r99-nothing", played_ms=10))  # unknown: ignored
        await client.send_audio(bytes(640))  # good audio is still accepted
        events = [e async for e in client.say("Chopsticks?")]
        assert events[-1].type == "response.end" and events[-1].status == "completed"

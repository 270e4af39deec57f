"""Voice in over the real server: microphone frames → Silero VAD → faster-whisper tiny.en → a reply,
with the real embedded LLM and real speech engines; barge-in and backchannels; bad audio.

The barge-in tests script the LLM (FakeLLM, a long reply streamed slowly) so that the character is
reliably mid-speech when the player talks over it: they test the session's barge-in logic with real
audio, VAD and ASR — not the model. Everything else here runs the real models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from conftest import SHARED, scene_dict
from faster_whisper.audio import decode_audio
from server_fixture import personas, serving  # noqa: F401  (personas: a fixture)

from npc_runtime import protocol as p
from npc_runtime.actions import Action, validate_action
from npc_runtime.asr.vad import SileroVAD
from npc_runtime.asr.wer import wer
from npc_runtime.asr.whisper import WhisperASR
from npc_runtime.client import AudioFrame, NpcClient
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.scene import Scene
from npc_runtime.server import NpcServer
from npc_runtime.session import Services
from npc_runtime.tts.espeak import EspeakTTS

pytestmark = pytest.mark.engine

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country"


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def jfk_pcm() -> bytes:
    return pcm16(decode_audio(str(SHARED / "data" / "jfk.flac"), sampling_rate=16000))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ears() -> AsyncIterator[tuple[WhisperASR, SileroVAD]]:
    asr, vad = WhisperASR("tiny.en"), SileroVAD()
    await vad.warm()
    await asr.warm()
    try:
        yield asr, vad
    finally:
        await asr.aclose()
        await vad.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def espeak() -> AsyncIterator[EspeakTTS]:
    tts = EspeakTTS(voice="en-us")
    await tts.warm()
    try:
        yield tts
    finally:
        await tts.aclose()


async def speak(tts: EspeakTTS, text: str) -> bytes:
    """Real synthesized speech (espeak-ng), PCM16 at ``tts.sample_rate``."""
    return b"".join([chunk.pcm async for chunk in tts.synthesize(text)])


@pytest_asyncio.fixture(loop_scope="session")
async def real_server(llama_engine: Any, ears: tuple[WhisperASR, SileroVAD], espeak: EspeakTTS,
                      personas: PersonaRegistry) -> AsyncIterator[NpcServer]:
    asr, vad = ears
    services = Services(personas=personas, dialogue=Dialogue(llm=llama_engine), tts=espeak, asr=asr, vad=vad)
    async with serving(services) as srv:
        yield srv


async def talk(client: NpcClient, pcm: bytes, rate: int, *, realtime: bool = False) -> list[Any]:
    """Stream ``pcm`` then silence (a live microphone) and collect events until the reply ends."""
    sender = asyncio.create_task(_mic(client, pcm, rate, realtime))
    events: list[Any] = []
    try:
        async with asyncio.timeout(120):
            async for event in client.events():
                events.append(event)
                if isinstance(event, p.TranscriptFinal) and not event.text.strip():
                    break
                if isinstance(event, p.ResponseEnd) or (isinstance(event, p.ErrorEvent) and event.response_id is None):
                    break
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return events


async def _mic(client: NpcClient, pcm: bytes, rate: int, realtime: bool) -> None:
    await client.stream_audio(pcm, sample_rate=rate, realtime=realtime)
    while True:
        await client.stream_audio(bytes(rate // 5 * 2), sample_rate=rate, realtime=True)


def words_of(text: str) -> list[str]:
    return [w.strip(".,!?;:").lower() for w in text.split()]


def kinds(events: list[Any]) -> list[str]:
    return [e.type for e in events if not isinstance(e, AudioFrame)]


async def test_jfk_recording_gives_the_transcript_and_a_reply(real_server: NpcServer, jfk_pcm: bytes) -> None:
    async with NpcClient.connect(real_server.url) as client:
        # The speech pauses for ~1.1 s twice mid-sentence (an orator's pauses): a longer end-of-turn
        # silence than the persona's 500 ms default keeps it one utterance.
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"),
                                           options={"seed": 3, "listen": {"end_silence_ms": 1400}})
        assert ready.audio_in is not None and ready.audio_in.sample_rate == 16000
        assert ready.listen is not None and ready.listen.end_silence_ms == 1400 and ready.listen.barge_in_ms == 500
        events = await talk(client, jfk_pcm, 16000, realtime=True)
    seq = kinds(events)
    assert seq.index("speech.started") < seq.index("speech.stopped") < seq.index("transcript.final") < seq.index("response.start")
    partials = [e for e in events if isinstance(e, p.TranscriptPartial)]
    assert partials, "no partial transcript while the player spoke"
    for before, after in zip(partials, partials[1:]):
        assert after.stable.startswith(before.stable), "stable words changed"
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    error = wer(JFK, final.text)
    print(f"\njfk: {final.text!r} WER {error:.1%}; timings {final.timings}")
    assert error <= 0.10
    start = next(e for e in events if isinstance(e, p.ResponseStart))
    assert (start.trigger, start.ref) == ("voice", final.utterance_id)
    end = events[-1]
    assert isinstance(end, p.ResponseEnd) and end.status == "completed" and end.text.strip()
    assert any(isinstance(e, AudioFrame) for e in events), "the reply was not spoken"
    # The voice turn's timeline starts where the player's voice ended.
    assert 0 < end.timings["transcript_final"] <= end.timings["first_audio"] <= end.timings["end"]


async def test_spoken_request_at_another_rate_gets_a_valid_reply(real_server: NpcServer, espeak: EspeakTTS) -> None:
    """Which action (if any) the model takes depends on the model, the CPU and its kernels: only that every action is
    valid for the scene is asserted, never which one."""
    speech = await speak(espeak, "Please hand me the chopsticks.")
    scene = scene_dict("ramen_shop.json")
    async with NpcClient.connect(real_server.url) as client:
        ready = await client.start_session("jin", scene=scene, player_name="Kai",
                                           options={"audio_in": {"sample_rate": espeak.sample_rate}})
        events = await talk(client, speech, espeak.sample_rate)
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    print(f"\nheard {final.text!r}; reply {events[-1].text!r} actions {events[-1].actions}")
    assert wer("Please hand me the chopsticks", final.text) <= 0.2
    end = events[-1]
    assert isinstance(end, p.ResponseEnd) and end.status == "completed" and (end.text.strip() or end.actions)
    actions = [e for e in events if isinstance(e, p.ActionEvent)]
    parsed = Scene.model_validate(scene).without("jin")
    for a in actions:
        assert validate_action(Action(a.verb, object=a.object, target=a.target), parsed, ready.actions, "jin"), a
    assert [(a.verb, a.object, a.target) for a in actions] == [(a.verb, a.object, a.target) for a in end.actions]


STORY = ("Long ago, before the shop had a sign, my grandmother cooked broth in a single iron pot. "
         "Every morning she walked to the harbour for bones and kelp, and every night she tasted the pot "
         "until the flavour was deep enough to make a fisherman quiet. The recipe was never written down.")


@asynccontextmanager
async def story_server(ears: tuple[WhisperASR, SileroVAD], espeak: EspeakTTS, personas: PersonaRegistry,
                       token_delay: float) -> AsyncIterator[tuple[NpcServer, FakeLLM]]:
    asr, vad = ears
    llm = FakeLLM([STORY, "Of course. [give chopsticks player]"], token_delay=token_delay)
    services = Services(personas=personas, dialogue=Dialogue(llm=llm), tts=espeak, asr=asr, vad=vad)
    async with serving(services) as srv:
        yield srv, llm


@pytest_asyncio.fixture(loop_scope="session")
async def fast_story(ears: tuple[WhisperASR, SileroVAD], espeak: EspeakTTS,
                     personas: PersonaRegistry) -> AsyncIterator[tuple[NpcServer, FakeLLM]]:
    async with story_server(ears, espeak, personas, 0.03) as served:
        yield served


class Player:
    """Plays the reply audio in real time (by the clock) and reports playback marks every 100 ms."""

    def __init__(self, client: NpcClient, rate: int) -> None:
        self.client, self.rate = client, rate
        self.response_id: str | None = None
        self.started: float | None = None
        self.received_ms = 0.0
        self.stopped_at: float | None = None

    def played_ms(self) -> float:
        if self.started is None:
            return 0.0
        return min((time.monotonic() - self.started) * 1000.0, self.received_ms)

    def on_audio(self, event: p.AudioChunkEvent) -> None:
        if self.started is None:
            self.response_id, self.started = event.response_id, time.monotonic()
        self.received_ms = event.start_ms + event.samples * 1000.0 / self.rate

    async def marks(self) -> None:
        while self.stopped_at is None:
            await asyncio.sleep(0.1)
            if self.response_id is not None and self.stopped_at is None:
                await self.client.playback_mark(self.response_id, self.played_ms())

    async def stop(self) -> float:
        played = self.played_ms()
        self.stopped_at = played
        assert self.response_id is not None
        await self.client.playback_mark(self.response_id, played)
        return played


@pytest.mark.parametrize("token_delay", [0.03, 0.3], ids=["while-playing", "while-generating"])
async def test_barge_in_stops_the_reply_and_history_keeps_only_what_was_heard(
        ears: tuple[WhisperASR, SileroVAD], espeak: EspeakTTS, personas: PersonaRegistry, jfk_pcm: bytes,
        token_delay: float) -> None:
    """A fast model has finished the reply long before its audio is played (the usual case): the barge-in
    stops playback. A slow one is still generating: the barge-in stops generation and synthesis too."""
    async with story_server(ears, espeak, personas, token_delay) as (server, llm):
        await _barge_in(server, llm, jfk_pcm, still_generating=token_delay > 0.1)


async def _barge_in(server: NpcServer, llm: FakeLLM, jfk_pcm: bytes, *, still_generating: bool) -> None:
    async with NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"), options={"listen": {"end_silence_ms": 1400}})
        assert ready.audio is not None
        player = Player(client, ready.audio.sample_rate)
        await client.send(p.TextInput(text="Tell me the story of the shop."))
        marks = asyncio.create_task(player.marks())
        mic: asyncio.Task[None] | None = None
        events: list[Any] = []
        heard_at_stop = None
        try:
            async with asyncio.timeout(90):
                async for event in client.events():
                    events.append(event)
                    if isinstance(event, p.AudioChunkEvent):
                        player.on_audio(event)
                        if mic is None and player.received_ms > 1500:
                            # 1.5 s into playback, the player talks over the character.
                            await asyncio.sleep(max(0.0, 1.5 - (time.monotonic() - player.started)))  # type: ignore[operator]
                            mic = asyncio.create_task(_mic(client, jfk_pcm, 16000, True))
                    if isinstance(event, p.ResponseInterrupted):
                        heard_at_stop = await player.stop()
                    if isinstance(event, p.ResponseEnd) and event.response_id != player.response_id:
                        break  # the reply to what the player said
        finally:
            marks.cancel()
            if mic is not None:
                mic.cancel()
            await asyncio.gather(marks, *([mic] if mic else []), return_exceptions=True)
        session = next(iter(server.sessions))
        history = list(session.character.history)
    seq = kinds(events)
    first_end = next(e for e in events if isinstance(e, p.ResponseEnd))
    stop = next(e for e in events if isinstance(e, p.ResponseInterrupted))
    assert stop.response_id == first_end.response_id == player.response_id
    assert heard_at_stop is not None
    if still_generating:
        assert seq.index("speech.started") < seq.index("response.interrupted") < seq.index("response.end")
        assert first_end.status == "interrupted"
        # Generation and synthesis stopped: far fewer words sent than the story has.
        assert len(words_of(first_end.text)) < len(words_of(STORY)) - 10
        assert llm.stopped_early >= 1
    else:
        assert first_end.status == "completed" and seq.index("response.end") < seq.index("speech.started")
        assert seq.index("speech.started") < seq.index("response.interrupted")
    print(f"\nsent {len(first_end.text.split())} words / {first_end.audio_ms:.0f} ms; heard {heard_at_stop:.0f} ms")
    # What the character is remembered to have said: the heard words, a strict prefix of the story.
    heard = next(h.text for h in history if h.kind == "character")
    print(f"history: {heard!r}")
    assert words_of(STORY)[: len(words_of(heard))] == words_of(heard), heard
    assert len(words_of(heard)) < len(words_of(first_end.text)), "history holds everything sent, not what was heard"
    # About 1.5 s (plus the barge-in delay) of espeak-ng speech is a handful of words.
    assert 2 <= len(words_of(heard)) <= 14, heard
    # The player's words started the next response, whose prompt carries only the heard part.
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    assert wer(JFK, final.text) <= 0.15 and not final.backchannel
    prompt = " ".join(m.content for m in llm.requests[-1].messages)
    assert heard in prompt and STORY not in prompt


async def test_a_backchannel_does_not_interrupt(fast_story: tuple[NpcServer, FakeLLM], espeak: EspeakTTS) -> None:
    server, _ = fast_story
    uh_huh = await speak(espeak, "Uh huh.")
    clip_ms = len(uh_huh) / 2 / espeak.sample_rate * 1000
    async with NpcClient.connect(server.url) as client:
        ready = await client.start_session("jin", scene=scene_dict("ramen_shop.json"), options={
            "audio_in": {"sample_rate": espeak.sample_rate}, "listen": {"barge_in_ms": 1200}})
        assert ready.listen is not None and ready.listen.barge_in_ms == 1200 and clip_ms < 1200
        await client.send(p.TextInput(text="Tell me the story of the shop."))
        mic: asyncio.Task[None] | None = None
        events: list[Any] = []
        try:
            async with asyncio.timeout(90):
                async for event in client.events():
                    events.append(event)
                    if isinstance(event, p.AudioChunkEvent) and mic is None:
                        mic = asyncio.create_task(_mic(client, uh_huh, espeak.sample_rate, True))
                    if isinstance(event, p.ResponseEnd):
                        break
                while not any(isinstance(e, p.TranscriptFinal) for e in events):
                    events.append(await client.recv(timeout=30))
        finally:
            if mic is not None:
                mic.cancel()
                await asyncio.gather(mic, return_exceptions=True)
    end = next(e for e in events if isinstance(e, p.ResponseEnd))
    final = next(e for e in events if isinstance(e, p.TranscriptFinal))
    print(f"\nbackchannel {final.text!r} ({clip_ms:.0f} ms clip), reply {end.status}")
    assert end.status == "completed" and end.text.strip() == STORY
    assert final.backchannel and not any(isinstance(e, p.ResponseInterrupted) for e in events)
    assert "speech.started" in kinds(events)


async def test_bad_audio_gets_errors_and_the_session_goes_on(fast_story: tuple[NpcServer, FakeLLM]) -> None:
    server, _ = fast_story
    async with NpcClient.connect(server.url) as client:
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


def test_cli_say_audio_in_with_a_flac_recording() -> None:
    """`npc say --audio-in` in-process: a FLAC decoded by PyAV, sent as fast as possible."""
    import json
    import subprocess
    import sys

    from conftest import EVAL_DIR, ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "npc_runtime.cli", "say", "jin", "--audio-in", str(SHARED / "data" / "jfk.flac"), "--fast",
         "--end-silence-ms", "1400", "--scene", str(EVAL_DIR / "scenes" / "ramen_shop.json"), "--json", "--seed", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session.ready" and kinds[-1] == "response.end", kinds
    final = next(e for e in events if e["type"] == "transcript.final")
    assert wer(JFK, final["text"]) <= 0.10, final["text"]
    assert events[-1]["status"] == "completed" and events[-1]["text"].strip()


class BrokenASR:
    """A speech recogniser that always fails (session logic: the failure is reported, the session goes on)."""

    name, sample_rate = "broken", 16000

    async def warm(self) -> None: ...

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Any:
        from npc_runtime.errors import NpcError

        raise NpcError("the decoder crashed", code="asr_failed")

    async def aclose(self) -> None: ...


async def test_a_failing_recogniser_is_reported_and_the_session_goes_on(
        ears: tuple[WhisperASR, SileroVAD], espeak: EspeakTTS, personas: PersonaRegistry, jfk_pcm: bytes) -> None:
    _, vad = ears
    services = Services(personas=personas, dialogue=Dialogue(llm=FakeLLM(["Pardon?"])), tts=espeak, asr=BrokenASR(), vad=vad)  # type: ignore[arg-type]
    async with serving(services) as server:
        async with NpcClient.connect(server.url) as client:
            await client.start_session("jin", options={"text_only": True})
            sender = asyncio.create_task(_mic(client, jfk_pcm[: 16000 * 2 * 3], 16000, False))
            try:
                error = None
                async with asyncio.timeout(30):
                    while error is None:
                        event = await client.recv()
                        if isinstance(event, p.ErrorEvent):
                            error = event
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            assert (error.code, error.fatal) == ("asr_failed", False)
            await client.send(p.TextInput(text="Can you hear me?"))
            async with asyncio.timeout(30):
                while not isinstance(event := await client.recv(), p.ResponseEnd):
                    assert not isinstance(event, p.ErrorEvent) or event.code == "asr_failed", event  # later utterances fail too
            assert event.status == "completed" and event.text == "Pardon?"
            assert next(iter(server.sessions)).voice is not None  # listening again

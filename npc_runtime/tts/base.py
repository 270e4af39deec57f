"""The TTS interface every engine implements and the engine thread they share.

An engine turns text into a stream of :class:`SynthChunk` (PCM16 mono at the engine's
``sample_rate``, one chunk per sentence), each with the phonemes it speaks as
``(ipa, samples)`` pairs that cover the chunk's audio exactly. ``synthesize()`` is an async
generator and cancel-safe: closing it (``aclose()``, or cancelling the task iterating it) sets
a stop flag that the engine thread checks between sentences (and, where the engine allows,
inside one), and waits for the thread to stop, so the engine is idle and reusable after.

Text the engine cannot speak never raises: :func:`~npc_runtime.tts.text.clean_text` strips markup, emoji, control
characters and (for Latin-script voices) letters of other scripts, and breaks very long words;
when nothing speakable remains, ``synthesize()`` yields nothing. Engine failures raise
:class:`~npc_runtime.errors.NpcError` with code ``tts_unavailable`` (cannot load: missing
package, voice or model file) or ``tts_failed`` (synthesis broke); messages never hold the text.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from npc_runtime.engine_thread import EngineThread, closing
from npc_runtime.errors import NpcError
from npc_runtime.tts.text import clean_text, split_sentences

#: The name of an inserted stretch of silence (leading silence, padding, espeak-ng pauses):
#: IPA's group boundary, which the viseme mapper reads as ``sil``.
PAUSE = "|"

__all__ = ["PAUSE", "TTS", "EngineThread", "Phoneme", "SynthChunk", "SynthStats", "ThreadedTTS", "closing",
           "fit_phonemes", "spread_phonemes", "stretch_phonemes", "tts_failed", "tts_thread", "tts_unavailable"]



@dataclass(frozen=True, slots=True)
class Phoneme:
    """One phoneme (an IPA string as the engine names it) and how many samples it lasts."""

    ipa: str
    samples: int


@dataclass(frozen=True, slots=True)
class SynthChunk:
    """Audio for one piece of text (usually a sentence).

    ``pcm``: 16-bit little-endian mono samples at ``sample_rate``. ``phonemes``: contiguous, in
    order, their ``samples`` summing exactly to the chunk's sample count. ``text``: the cleaned
    text this chunk speaks.
    """

    pcm: bytes
    sample_rate: int
    phonemes: tuple[Phoneme, ...]
    text: str

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate


@runtime_checkable
class TTS(Protocol):
    name: str

    @property
    def sample_rate(self) -> int:
        """Output rate in Hz (every chunk has it)."""

    async def warm(self) -> None:
        """Load the voice and synthesize a word; raise ``NpcError(code="tts_unavailable")`` if it cannot load."""

    def synthesize(self, text: str) -> AsyncIterator[SynthChunk]:
        """Speak ``text``, a chunk per sentence as soon as it is ready. Cancel-safe (see the module doc)."""

    async def aclose(self) -> None:
        """Stop any synthesis and release the engine; idempotent."""


def tts_unavailable(message: str) -> NpcError:
    return NpcError(message, code="tts_unavailable")


def tts_thread(name: str) -> EngineThread:
    """The engine thread of a speech engine (its errors are ``tts_unavailable`` / ``tts_failed``)."""
    return EngineThread(name, closed_error=tts_unavailable, failure=tts_failed)


def tts_failed(message: str) -> NpcError:
    return NpcError(message, code="tts_failed")


@dataclass(slots=True)
class SynthStats:
    """Figures of one ``synthesize()`` call, measured in the engine thread (for benchmarks).
    ``finished_at`` is a ``time.perf_counter()`` stamp of when the thread stopped working."""

    chunks: int = 0
    samples: int = 0
    sample_rate: int = 0
    first_chunk_s: float | None = None
    total_s: float = 0.0
    finished_at: float = 0.0
    stopped: bool = False

    @property
    def audio_s(self) -> float:
        return self.samples / self.sample_rate if self.sample_rate else 0.0

    @property
    def real_time_factor(self) -> float:
        """Compute time over audio time (below 1: faster than real time)."""
        return self.total_s / self.audio_s if self.audio_s else 0.0


# -- phoneme helpers -------------------------------------------------------------------------


def fit_phonemes(phonemes: Iterable[Phoneme], total: int) -> tuple[Phoneme, ...]:
    """Make the phonemes cover exactly ``total`` samples: drop zero-length entries (but keep
    zero-length word boundaries ``" "``), trim what runs past the end, pad the rest with a pause."""
    out: list[Phoneme] = []
    position = 0
    for phoneme in phonemes:
        samples = min(max(0, phoneme.samples), total - position)
        if samples > 0 or (phoneme.ipa == " " and position < total):
            out.append(Phoneme(phoneme.ipa, samples))
            position += samples
    if position < total:
        out.append(Phoneme(PAUSE, total - position))
    return tuple(out)


def spread_phonemes(symbols: Iterable[str], total: int) -> tuple[Phoneme, ...]:
    """Share ``total`` samples evenly among ``symbols`` (when an engine gives no timing)."""
    names = [s for s in symbols if s] or [PAUSE]
    share, extra = divmod(total, len(names))
    return fit_phonemes((Phoneme(n, share + (1 if i < extra else 0)) for i, n in enumerate(names)), total)


def stretch_phonemes(phonemes: Iterable[Phoneme], total: int) -> tuple[Phoneme, ...]:
    """Scale phoneme durations (from another engine's timing of the same text) to ``total`` samples."""
    items = list(phonemes)
    source = sum(p.samples for p in items)
    if not source:
        return spread_phonemes((p.ipa for p in items), total)
    out, position, acc = [], 0, 0
    for p in items:
        acc += p.samples
        end = round(acc * total / source)
        out.append(Phoneme(p.ipa, end - position))
        position = end
    return fit_phonemes(out, total)


class ThreadedTTS:
    """Shared skeleton of the real engines: clean, split into sentences, speak each in the
    engine thread (hooks ``_load`` and ``_speak`` run there), stream the chunks out.

    ``stats`` holds the figures of the last finished or stopped ``synthesize()``.
    """

    name = "threaded"

    def __init__(self, *, thread: EngineThread, owns_thread: bool, latin_only: bool) -> None:
        self._thread = thread
        self._owns_thread = owns_thread
        self._latin_only = latin_only
        self._load_lock = asyncio.Lock()
        self._loaded = False
        self._closed = False
        self.stats = SynthStats()

    @property
    def sample_rate(self) -> int:
        raise NotImplementedError

    # hooks, called in the engine thread
    def _load(self) -> None:
        raise NotImplementedError

    def _speak(self, sentence: str, stop: threading.Event) -> SynthChunk | None:
        raise NotImplementedError

    def _unload(self) -> None:
        pass

    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise tts_unavailable(f"the {self.name} engine is closed")
        async with self._load_lock:
            if not self._loaded:
                try:
                    await self._thread.call(self._load)
                except NpcError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any load failure means "not available"
                    raise tts_unavailable(f"the {self.name} engine could not load: {type(exc).__name__}: {exc}") from exc
                self._loaded = True

    async def warm(self) -> None:
        """Load the voice and speak one word. Cancelling it leaves the load running in the
        engine thread; a later call waits for nothing more than that."""
        await self._ensure_loaded()
        async for _ in self.synthesize("Hello."):
            pass

    async def synthesize(self, text: str) -> AsyncIterator[SynthChunk]:
        """Speak ``text``: one chunk per sentence, each as soon as it is made. Cancel-safe:
        closing the generator stops the engine thread at its next check (between sentences,
        and inside one where the engine allows) and waits for it."""
        cleaned = clean_text(text, latin_only=self._latin_only)
        if not cleaned:
            return
        await self._ensure_loaded()
        sentences = split_sentences(cleaned)
        work = self._thread.stream(lambda stop, emit: self._run(sentences, stop, emit), owner=self)
        async with closing(work) as chunks:  # closing us closes the stream at once
            async for chunk in chunks:
                yield chunk

    def _run(self, sentences: list[str], stop: threading.Event, emit: Callable[[object], None]) -> None:
        stats = SynthStats(sample_rate=self.sample_rate)
        t0 = time.perf_counter()
        try:
            for sentence in sentences:
                if stop.is_set():
                    break
                chunk = self._speak(sentence, stop)
                if chunk is None or not chunk.pcm:
                    continue
                stats.chunks += 1
                stats.samples += chunk.samples
                if stats.first_chunk_s is None:
                    stats.first_chunk_s = time.perf_counter() - t0
                emit(chunk)
        finally:
            stats.stopped = stop.is_set()
            stats.finished_at = time.perf_counter()
            stats.total_s = stats.finished_at - t0
            self.stats = stats

    async def aclose(self) -> None:
        """Stop any synthesis and free the engine. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_thread:
            await self._thread.aclose(self._unload)
        else:  # a shared thread (espeak-ng): stop only this engine's streams
            self._thread.stop_all(owner=self)



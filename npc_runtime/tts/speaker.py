"""One response's voice: text deltas in, audio chunks with viseme cues out, on one timeline.

:class:`Speaker` splits the reply's text into speakable units as it arrives
(:class:`~npc_runtime.tts.clauses.ClauseSplitter`), synthesizes each unit as soon as it is
complete, and turns the engine's phonemes into OVR viseme cues in ms from the start of the
response's audio. :meth:`Speaker.flush` synthesizes what is pending now — the session calls it
before an action tag, so the action's ``at_ms`` is exactly where the speech before it ends.
Cancel-safe: cancelling the caller closes the engine's stream, which stops at its next chunk.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from npc_runtime.tts.base import TTS, SynthChunk
from npc_runtime.tts.clauses import ClauseSplitter
from npc_runtime.tts.visemes import VisemeCue, phonemes_to_cues, word_end_samples


@dataclass(frozen=True, slots=True)
class SpokenChunk:
    """Audio for part of a reply: PCM16 mono, its position and its viseme cues (absolute ms)."""

    seq: int
    start_ms: float
    samples: int
    pcm: bytes
    cues: tuple[VisemeCue, ...]
    text: str
    #: Where each spoken word of ``text`` ends (absolute ms; the engine's words, see word_end_samples).
    word_ends_ms: tuple[float, ...] = ()
    sample_rate: int = 0

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.samples * 1000.0 / self.sample_rate if self.sample_rate else self.start_ms

    def heard_text(self, played_ms: float) -> str:
        """The words of this chunk heard by ``played_ms`` (whole words; by word timings, else pro rata)."""
        if played_ms >= self.end_ms:
            return self.text
        if played_ms <= self.start_ms:
            return ""
        words = self.text.split()
        ends = self.word_ends_ms
        if ends:
            done = sum(1 for end in ends if end <= played_ms)
            count = done if len(ends) == len(words) else round(len(words) * done / len(ends))
        else:
            count = int(len(words) * (played_ms - self.start_ms) / max(self.end_ms - self.start_ms, 1e-9))
        return " ".join(words[:count])


class Speaker:
    """The voice of one response (create one per response)."""

    def __init__(self, tts: TTS, *, splitter: ClauseSplitter | None = None) -> None:
        self.tts = tts
        self.sample_rate = tts.sample_rate
        self.splitter = splitter or ClauseSplitter()
        self.position_samples = 0
        self._seq = 0
        #: Called when a speakable unit (a clause) is complete and goes to the engine.
        self.on_unit: Callable[[], None] | None = None

    @property
    def position_ms(self) -> float:
        """Audio synthesized so far, in ms: where the next chunk starts."""
        return self.position_samples * 1000.0 / self.sample_rate

    async def feed(self, text: str) -> AsyncGenerator[SpokenChunk, None]:
        """Add reply text; yield the audio of every unit it completes."""
        for unit in self.splitter.feed(text):
            async for chunk in self._speak(unit):
                yield chunk

    async def flush(self) -> AsyncGenerator[SpokenChunk, None]:
        """Synthesize whatever text is pending (before an action, or at the end of the reply)."""
        for unit in self.splitter.flush():
            async for chunk in self._speak(unit):
                yield chunk

    def play(self, synths: Sequence[SynthChunk]) -> list[SpokenChunk]:
        """Place already synthesized audio (a cached filler) at the current position."""
        return [self._place(s) for s in synths if s.samples]

    async def _speak(self, unit: str) -> AsyncGenerator[SpokenChunk, None]:
        if self.on_unit is not None:
            self.on_unit()
        async with aclosing(self.tts.synthesize(unit)) as stream:
            async for synth in stream:
                if synth.samples == 0:
                    continue
                yield self._place(synth)

    def _place(self, synth: SynthChunk) -> SpokenChunk:
        cues = phonemes_to_cues(synth.phonemes, synth.sample_rate, offset_samples=self.position_samples)
        ends = word_end_samples(synth.phonemes, offset_samples=self.position_samples)
        chunk = SpokenChunk(
            seq=self._seq, start_ms=self.position_ms, samples=synth.samples, pcm=synth.pcm,
            cues=tuple(cues), text=synth.text,
            word_ends_ms=tuple(e * 1000.0 / synth.sample_rate for e in ends), sample_rate=synth.sample_rate,
        )
        self._seq += 1
        self.position_samples += synth.samples
        return chunk

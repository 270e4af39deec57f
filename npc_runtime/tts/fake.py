"""A scripted TTS for session-logic tests (never for a test that claims an engine works)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from npc_runtime.tts.base import Phoneme, SynthChunk, tts_unavailable
from npc_runtime.tts.text import clean_text, split_sentences


class FakeTTS:
    """Silence for session-logic tests: a chunk per sentence lasting ``ms_per_char`` per
    character, with one fake phoneme per character (a letter is its own "IPA", other
    characters are spaces or punctuation). It never stands in for a test that claims a real
    engine works.

    ``chunk_delay``: seconds slept before each chunk (cancellation lands there).
    ``fail_with`` is raised after ``fail_after`` chunks (0: before the first; at the end when
    the text has fewer sentences).
    Every ``synthesize()`` text is kept in ``texts``; ``stopped_early`` counts streams closed
    before their end. Cancel-safe.
    """

    name = "fake"

    def __init__(self, *, sample_rate: int = 16000, ms_per_char: float = 50.0, chunk_delay: float = 0.0,
                 fail_with: BaseException | None = None, fail_after: int = 0) -> None:
        self._sample_rate = sample_rate
        self.samples_per_char = max(1, round(sample_rate * ms_per_char / 1000))
        self.chunk_delay = chunk_delay
        self.fail_with = fail_with
        self.fail_after = fail_after
        self.texts: list[str] = []
        self.stopped_early = 0
        self.warmed = False
        self.closed = False

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    async def warm(self) -> None:
        self.warmed = True

    def chunk_for(self, sentence: str) -> SynthChunk:
        """The chunk this fake makes for one (cleaned) sentence."""
        n = self.samples_per_char
        phonemes = tuple(Phoneme(ch.lower() if ch.isalpha() else (" " if ch == " " else ch), n) for ch in sentence)
        return SynthChunk(bytes(2 * n * len(sentence)), self._sample_rate, phonemes, sentence)

    async def synthesize(self, text: str) -> AsyncIterator[SynthChunk]:
        if self.closed:
            raise tts_unavailable("the fake TTS is closed")
        self.texts.append(text)
        sentences = split_sentences(clean_text(text))
        done = False
        try:
            for index, sentence in enumerate(sentences):
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                if self.fail_with is not None and index >= self.fail_after:
                    raise self.fail_with
                yield self.chunk_for(sentence)
            if self.fail_with is not None:  # fewer sentences than fail_after
                raise self.fail_with
            done = True
        finally:
            if not done:
                self.stopped_early += 1

    async def aclose(self) -> None:
        self.closed = True

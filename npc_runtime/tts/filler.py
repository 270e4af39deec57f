"""Pre-synthesized filler lines ("Hmm, let me see.") per voice, for turns that would otherwise miss
their time-to-first-audio budget. Synthesized at warm-up (or session start), never on the turn path."""

from __future__ import annotations

from npc_runtime.tts.base import TTS, SynthChunk


class FillerCache:
    def __init__(self) -> None:
        self._cache: dict[tuple[TTS, str], list[SynthChunk]] = {}

    async def ensure(self, tts: TTS, text: str) -> None:
        """Synthesize and keep ``text`` in ``tts``'s voice (once)."""
        if (tts, text) not in self._cache:
            self._cache[(tts, text)] = [chunk async for chunk in tts.synthesize(text)]

    def get(self, tts: TTS, text: str) -> list[SynthChunk] | None:
        return self._cache.get((tts, text))

"""A response's voice, as an async-iterator transform: the dialogue's stream of speech, emotions and actions in;
the same stream out with the audio of each clause right after its text.

Text is spoken as soon as a clause is complete; before an emotion or an action the pending text is spoken first,
so the action's moment (``at_ms``) is exactly where the speech before it ends. A TTS failure comes out once as
:class:`VoiceFailed`, and the rest of the reply goes on as text only. While a clause's audio is coming out the
voice is held (:attr:`VoiceStep.lock`), so the filler never lands in the middle of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from npc_runtime.dialogue.turn import ActionOut, EmotionOut, SpeechDelta
from npc_runtime.errors import NpcError
from npc_runtime.tts.speaker import Speaker, SpokenChunk

DialogueOut = SpeechDelta | EmotionOut | ActionOut


@dataclass(frozen=True, slots=True)
class VoiceFailed:
    """The voice failed; what follows is text only."""

    error: NpcError


Voiced = DialogueOut | SpokenChunk | VoiceFailed


class VoiceStep:
    """The voice of one response (``speaker`` None: text only)."""

    def __init__(self, speaker: Speaker | None) -> None:
        self.speaker = speaker
        self.failed = False
        #: Held while audio comes out (a clause of the reply, or the whole filler).
        self.lock = asyncio.Lock()

    @property
    def speaking(self) -> bool:
        return self.speaker is not None and not self.failed

    async def voiced(self, outputs: AsyncGenerator[DialogueOut, None]) -> AsyncGenerator[Voiced, None]:
        """``outputs`` with the audio of the speech after each piece of text (closing this closes ``outputs``)."""
        async with aclosing(outputs):
            async for out in outputs:
                if isinstance(out, SpeechDelta):
                    yield out
                    async for item in self._audio(out.text):
                        yield item
                else:
                    async for item in self._audio(None):
                        yield item
                    yield out
            async for item in self._audio(None):
                yield item

    async def _audio(self, text: str | None) -> AsyncGenerator[SpokenChunk | VoiceFailed, None]:
        """The audio of the clauses ``text`` completes (None: of all the text pending)."""
        if self.speaker is None or self.failed:
            return
        try:
            async with self.lock, aclosing(self.speaker.feed(text) if text is not None else self.speaker.flush()) as chunks:
                async for chunk in chunks:
                    yield chunk
        except NpcError as exc:
            self.failed = True
            yield VoiceFailed(exc)

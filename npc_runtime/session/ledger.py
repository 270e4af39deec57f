"""The heard-audio ledger: what a response sent the client to play, what the client says it played
(``playback.mark``), and from that what the player heard — the words and the actions that go back into the
history when a response is cut short (barge-in, interruption).

:class:`Playback` is one response's record; :class:`Recent` keeps the last few finished responses of a connection
so that late marks still find theirs.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from npc_runtime.dialogue.turn import ActionOut
from npc_runtime.tts.speaker import SpokenChunk

if TYPE_CHECKING:
    from npc_runtime.session.response import Response

#: Finished responses kept so that late ``playback.mark`` events still find theirs.
RECENT_RESPONSES = 4


@dataclass(slots=True)
class Playback:
    """One response's audio on the client: the chunks sent (with their words), the last playback mark, and whether
    the playback was stopped before the end."""

    clock: Callable[[], float]
    #: The response has a voice (else nothing is played, and the player read all of it).
    voiced: bool = False
    spoken: list[SpokenChunk] = field(default_factory=list)
    #: Chunks of the pre-synthesized filler: heard, but not the reply's words.
    filler_seqs: set[int] = field(default_factory=set)
    first_audio_at: float | None = None
    #: The last playback mark: (played_ms, clock time it arrived).
    mark: tuple[float, float] | None = None
    #: Playback was stopped before the end (interrupted, or barge-in while its audio played).
    cut: bool = False

    def sent(self, chunk: SpokenChunk, *, filler: bool = False) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = self.clock()
        self.spoken.append(chunk)
        if filler:
            self.filler_seqs.add(chunk.seq)

    def marked(self, played_ms: float) -> None:
        self.mark = (played_ms, self.clock())

    @property
    def audio_ms(self) -> float:
        """Audio sent so far, in ms from the start of the response's audio."""
        return self.spoken[-1].end_ms if self.spoken else 0.0

    @property
    def heard_ms(self) -> float | None:
        """For a cut response with playback marks: how much the player heard; else None (all of it)."""
        if not self.cut or self.mark is None or not self.voiced:
            return None
        return round(min(self.mark[0], self.audio_ms), 1)

    def heard_text(self) -> str | None:
        """The reply's words the player heard, when that is less than all of them; else None."""
        heard = self.heard_ms
        if heard is None:
            return None
        return " ".join(t for t in (c.heard_text(heard) for c in self.spoken if c.seq not in self.filler_seqs) if t)

    def playing_until(self) -> float:
        """Estimated clock time at which the client's playback of this response ends (0: nothing was sent)."""
        if self.first_audio_at is None:
            return 0.0
        if self.mark is not None:
            played, at = self.mark
            return at + max(self.audio_ms - played, 0.0) / 1000.0
        return self.first_audio_at + self.audio_ms / 1000.0

    def said(self, text: str, actions: Sequence[ActionOut], action_at: Sequence[float | None]) -> str:
        """What the character said and did, as it goes back into the prompt: for a response cut short, only the
        heard words and the actions reached."""
        heard = self.heard_ms
        if heard is None:
            text, reached = text.strip(), list(actions)
        else:
            text = self.heard_text() or ""
            reached = [a for a, at in zip(actions, action_at) if at is None or at <= heard]
        tags = " ".join(a.action.as_tag() for a in reached)
        return " ".join(part for part in (text, tags) if part)


class Recent:
    """The last finished responses of a connection (all its characters), newest last."""

    def __init__(self, size: int = RECENT_RESPONSES) -> None:
        self._responses: collections.deque[Response] = collections.deque(maxlen=size)

    def add(self, response: Response) -> None:
        self._responses.append(response)

    def find(self, response_id: str) -> Response | None:
        return next((r for r in reversed(self._responses) if r.id == response_id), None)

    def last(self) -> Response | None:
        return self._responses[-1] if self._responses else None

"""Streaming split of the model's output into speech text and actions.

``TagStreamParser`` is fed text chunks as tokens arrive and returns, in order, the speech text
with every ``[...]`` tag removed (:class:`TextPiece`) and the actions those tags name
(:class:`ActionPiece`). Rules:

* Speech text is emitted as soon as it cannot belong to a tag; only whitespace is held back
  until the next word shows whether it is needed (so a space before a final tag is trimmed).
* Every whitespace run, and every tag, becomes at most one space between words: no double
  spaces, no leading space at the start of the reply, no trailing space at the end, and no
  space before closing punctuation where a tag was removed (``go [give x player].`` → ``go.``).
* A tag that does not parse to a valid action for the scene (unknown verb or id, a nested
  ``[``, a body over :data:`MAX_TAG_BODY` chars, or still open at :meth:`close`) is dropped and
  counted in ``dropped``; a stray ``]`` is dropped silently. Brackets never reach the speech.

Pure and synchronous (no I/O): feeding the same text in any chunking gives the same pieces
once adjacent text pieces are joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from npc_runtime.actions import parse_emotion
from npc_runtime.dialogue.grammar import Action, parse_action
from npc_runtime.scene import Scene

#: A ``[`` followed by more than this many characters without ``]`` is not a tag.
MAX_TAG_BODY = 80
#: Punctuation that never gets a space before it when only a removed tag stood there.
_CLOSING = frozenset(".,!?;:)")


@dataclass(frozen=True, slots=True)
class TextPiece:
    """Speech text, tags removed, whitespace normalised."""

    text: str


@dataclass(frozen=True, slots=True)
class ActionPiece:
    """An action, with ``text_offset``: the length of the speech text before it."""

    action: Action
    text_offset: int


@dataclass(frozen=True, slots=True)
class EmotionPiece:
    """An ``[emotion <name>]`` tag, with ``text_offset`` like an action."""

    emotion: str
    text_offset: int


Piece = TextPiece | ActionPiece | EmotionPiece


class TagStreamParser:
    """Split one reply into speech and actions as it streams (see the module docstring)."""

    def __init__(self, scene: Scene, verbs: Sequence[str], self_id: str | None = None, *, emotions: bool = False) -> None:
        self.emotions = emotions  #: whether ``[emotion <name>]`` tags are recognised
        self._scene = scene
        self._verbs = tuple(verbs)
        self._self_id = self_id
        self._tag: list[str] | None = None  # the body of an open tag, None outside a tag
        self._space = False  # whitespace (or a tag) seen since the last word character
        self._tag_in_gap = False  # a tag was removed since the last word character
        self._closed = False
        self.text = ""  #: the full speech so far
        self.actions: list[Action] = []  #: the valid actions so far
        self.dropped = 0  #: tags dropped (invalid, unknown, too long, unterminated)

    def feed(self, chunk: str) -> list[Piece]:
        """Consume ``chunk``; return the pieces it completes, in order."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        out: list[Piece] = []
        speech: list[str] = []
        for ch in chunk:
            if self._tag is not None:
                self._feed_tag(ch, speech, out)
            elif ch == "[":
                self._tag = []
            elif ch == "]":
                self._space = True
            elif ch.isspace():
                self._space = True
            else:
                self._word_char(ch, speech)
        self._flush(speech, out)
        return out

    def close(self) -> list[Piece]:
        """End of the reply: drop an unterminated tag and any trailing whitespace."""
        if self._closed:
            return []
        self._closed = True
        if self._tag is not None:
            self._tag = None
            self.dropped += 1
        self._space = False
        return []

    # -- internals -------------------------------------------------------------------------

    def _feed_tag(self, ch: str, speech: list[str], out: list[Piece]) -> None:
        body = self._tag
        assert body is not None
        if ch == "]":
            self._tag = None
            self._space = self._tag_in_gap = True
            emotion = parse_emotion("".join(body)) if self.emotions else None
            if emotion is not None:
                self._flush(speech, out)
                out.append(EmotionPiece(emotion, len(self.text)))
                return
            action = parse_action("".join(body), self._scene, self._verbs, self._self_id)
            if action is None:
                self.dropped += 1
                return
            self._flush(speech, out)
            self.actions.append(action)
            out.append(ActionPiece(action, len(self.text)))
        elif ch == "[" or ch in "\r\n":
            # Not a tag after all: drop what was open (a new "[" starts a fresh tag).
            self.dropped += 1
            self._space = self._tag_in_gap = True
            self._tag = [] if ch == "[" else None
        elif len(body) >= MAX_TAG_BODY:
            self.dropped += 1
            self._tag = None
            self._space = self._tag_in_gap = True
            self._feed_text_char(ch, speech)
        else:
            body.append(ch)

    def _feed_text_char(self, ch: str, speech: list[str]) -> None:
        if ch.isspace():
            self._space = True
        else:
            self._word_char(ch, speech)

    def _word_char(self, ch: str, speech: list[str]) -> None:
        if self._space and (self.text or speech) and not (self._tag_in_gap and ch in _CLOSING):
            speech.append(" ")
        self._space = self._tag_in_gap = False
        speech.append(ch)

    def _flush(self, speech: list[str], out: list[Piece]) -> None:
        if speech:
            piece = "".join(speech)
            speech.clear()
            self.text += piece
            out.append(TextPiece(piece))

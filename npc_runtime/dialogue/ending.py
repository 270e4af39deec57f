"""Replies end at a sentence boundary, never mid-word at ``max_tokens``. Pure.

Text already streamed to the client and spoken cannot be taken back, so a reply is not trimmed after the fact:
it is given room to finish instead. The model is asked for :func:`hard_limit` tokens — the reply's cap plus
:func:`slack` (a third of it, 8 to 24 tokens: one sentence) — and :class:`Ending`, fed the model's raw text
(tags included) as it streams, ends the reply itself once the cap is spent:

* past the cap (``soft`` tokens, counted as chunks), the reply stops at the first sentence end: a ``. ! ? …``
  (closing quotes or brackets after it) followed by whitespace and then a word that does not start in lower case
  ("e.g. this" and "3.5" go on). Action and emotion tags right after the sentence still pass ("Here's the menu.
  [give menu player]"), so an action the sentence announced is not lost; the first spoken word after them is
  never passed on, and generation stops there;
* past the cap, the last partial word is held back until the next chunk shows it complete; if the model still
  runs into the hard limit (a sentence longer than the slack), that partial word is dropped, so the reply ends
  mid-sentence but on a whole word. ``tests/test_ending.py`` covers each case; the action evals count replies
  that still end without a sentence end.

Before the cap nothing is held back: the player hears the reply as fast as today. A reply ended here reports
``finish_reason`` ``"length"`` (``response.end.truncated``: the cap ended it, not the model).
"""

from __future__ import annotations

_MARKS = frozenset(".!?…")
_CLOSERS = frozenset("\"'”’»)]}")


def slack(limit: int) -> int:
    """Extra tokens past ``limit`` for the sentence in progress to end: a third of the cap, 8 to 24."""
    return max(8, min(24, limit // 3))


def hard_limit(limit: int) -> int:
    """The ``max_tokens`` the model is asked for when the reply's cap is ``limit``."""
    return limit + slack(limit)


class Ending:
    """Where one reply ends (see the module docstring). One instance per reply; not thread-safe."""

    __slots__ = ("soft", "tokens", "stopped", "_state", "_in_tag", "_held")

    def __init__(self, soft: int) -> None:
        #: The reply's cap in tokens: past it, the reply ends at the next sentence end.
        self.soft = soft
        self.tokens = 0
        #: The reply was ended here (past the cap, at a sentence end): generation must stop.
        self.stopped = False
        self._state = "text"  # "text" | "mark" (a sentence mark just seen) | "end" (a sentence end, then space)
        self._in_tag = False
        self._held = ""

    @property
    def overtime(self) -> bool:
        return self.tokens > self.soft

    def feed(self, chunk: str) -> str:
        """One chunk of the model's text; return what may go on to the tag parser now (after :attr:`stopped`
        turns true, nothing more is accepted: close the model's stream)."""
        if self.stopped:
            return ""
        self.tokens += 1
        out: list[str] = []
        for ch in chunk:
            if self._stop_before(ch):
                self.stopped = True
                break
            out.append(ch)
        text = self._held + "".join(out)
        if not self.overtime or self.stopped:
            self._held = ""
            return text
        cut = _word_start(text) if not self._in_tag else len(text)
        self._held = text[cut:]
        return text[:cut]

    def finish(self, reason: str | None) -> str:
        """The model's stream ended with ``reason``: the held text that may still go on (a partial word is
        dropped when the hard limit cut it)."""
        held, self._held = self._held, ""
        if reason == "length" and held and held[-1].isalnum():
            return ""
        return held

    def _stop_before(self, ch: str) -> bool:
        """Advance the sentence-end state by ``ch``; True when ``ch`` is the first spoken word past a sentence
        end in overtime (the reply ends before it)."""
        if self._in_tag:
            self._in_tag = ch != "]"
            return False
        if ch == "[":
            self._in_tag = True
            if self._state == "mark":
                self._state = "end"
            return False
        if ch.isspace():
            if self._state == "mark":
                self._state = "end"
            return False
        if ch in _MARKS or (ch in _CLOSERS and self._state == "mark"):
            self._state = "mark"
            return False
        if self._state == "end" and not ch.islower():
            if self.overtime:
                return True
        self._state = "text"
        return False


def _word_start(text: str) -> int:
    """Where the trailing run of word characters of ``text`` starts (``len(text)`` when it ends on a boundary)."""
    i = len(text)
    while i > 0 and not text[i - 1].isspace() and text[i - 1] not in "[]":
        i -= 1
    return i

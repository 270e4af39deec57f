"""Local agreement over successive partial transcripts: which words may be shown as settled. Pure.

Each new hypothesis of a growing utterance is compared with the one before it; the words both
agree on (longest common prefix, compared without case or punctuation) past the stable count
become stable. Stable words never change or shrink afterwards, even when a later hypothesis
rewrites them: a later hypothesis only contributes the words after the stable count.
"""

from __future__ import annotations

from npc_runtime.asr.wer import normalize

__all__ = ["Stabilizer"]


def _key(word: str) -> str:
    return "".join(normalize(word))


class Stabilizer:
    """``update(hypothesis) -> (stable, unstable)`` per partial; ``reset()`` between utterances."""

    def __init__(self) -> None:
        self._stable: list[str] = []
        self._previous: list[str] | None = None

    @property
    def stable(self) -> str:
        return " ".join(self._stable)

    def update(self, hypothesis: str) -> tuple[str, str]:
        words = hypothesis.split()
        n = len(self._stable)
        if self._previous is not None:
            for old, new in zip(self._previous[n:], words[n:], strict=False):
                if _key(old) != _key(new):
                    break
                self._stable.append(new)
        self._previous = words
        return " ".join(self._stable), " ".join(words[len(self._stable):])

    def reset(self) -> None:
        self._stable = []
        self._previous = None

"""Copy detection for the simulations and the judge: pure functions on text, no model.

Two lines *repeat* each other when their normalised words are equal, or when the shorter line has
at least :data:`MIN_COPIED` words, and at least half of its words, in runs of at least :data:`MIN_RUN`
consecutive words that the longer line has too (:func:`overlap`). Runs, not single words, and a
floor of five: two lines about the same blood test share "the blood test" without one copying the
other; a reply that recites the other speaker's sentence shares whole runs. Lines under five words
repeat only when equal.

Normalising: lower case, action tags (``[give x y]``) and a ``Name:`` speaker prefix dropped,
curly quotes straightened, punctuation removed, whitespace collapsed.

Used by :mod:`npc_runtime.sim.runner` (a role echoing the other's line or its own previous one) and
:mod:`npc_runtime.sim.judge` (a reason that copies the quoted line).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

#: The shortest run of shared consecutive words that counts as copied.
MIN_RUN = 3
#: At least this many copied words (in such runs) make a repeat, whatever the share.
MIN_COPIED = 5
#: Share of the shorter line's words in shared runs from which it counts as a repeat.
REPEAT_OVERLAP = 0.5

_TAG = re.compile(r"\[[^\[\]]*\]")
_SPEAKER = re.compile(r"\A\s*[A-Z][A-Za-z'-]*(?: [A-Z][A-Za-z'-]*){0,2}:\s+")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (see the module docstring)."""
    text = _SPEAKER.sub("", _TAG.sub(" ", text.translate(_QUOTES)))
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    """``text`` as compared: its normalised words joined by single spaces."""
    return " ".join(words(text))


def copied_words(a: Sequence[str], b: Sequence[str], *, min_run: int = MIN_RUN) -> int:
    """How many words of ``a`` lie in runs of at least ``min_run`` consecutive words that ``b`` has too."""
    matcher = SequenceMatcher(None, list(a), list(b), autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks() if block.size >= min_run)


def overlap(a: str, b: str) -> float:
    """Share (0..1) of the shorter line's words that the other line has in shared runs (see :func:`copied_words`)."""
    wa, wb = words(a), words(b)
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    if not short:
        return 0.0
    return copied_words(short, long_) / len(short)


def repeats(a: str, b: str, *, threshold: float = REPEAT_OVERLAP) -> bool:
    """Whether ``a`` and ``b`` say the same thing: equal once normalised, or copied (see the module docstring)."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return False
    if wa == wb:
        return True
    short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    copied = copied_words(short, long_)
    return copied >= MIN_COPIED and copied >= threshold * len(short)


def first_repeat(text: str, earlier: Sequence[str], *, threshold: float = REPEAT_OVERLAP) -> int | None:
    """The index in ``earlier`` of the first line ``text`` repeats (see :func:`repeats`), or None."""
    for index, line in enumerate(earlier):
        if repeats(text, line, threshold=threshold):
            return index
    return None

"""Streaming clause splitter: LLM text deltas in, speakable units out as soon as they are complete. Pure.

A unit ends at a sentence end (``. ! ? …`` and runs of them, with closing quotes or brackets after them) followed
by whitespace and a word that does not start in lower case ('"Stop!" she said' stays one unit), or at a newline.
In a long unit (``min_chars`` or more; ``first_min_chars`` for the first unit, so that first audio starts fast) a
clause end (``, ; :`` or a dash) followed by whitespace ends it too. A unit that reaches ``max_chars`` is cut at
its last clause end (when that keeps a third of it) or else at its last word boundary.

Never split: inside numbers and URLs ("3.5", "1,000", "example.com/a?b" — no whitespace follows the mark), after
abbreviations ("Mr.", "Dr.", "e.g.", "U.S.", initials), inside ellipses ("..." is one mark), or inside a word (a
single word longer than ``max_chars`` stays whole). A unit needs a letter, so "1." of a list does not stand alone.

Every decision looks only at the text up to two characters past the marks (the whitespace and the next word's
first letter, which LLM tokens bring together: " She") and waits until they have arrived, so feeding the same
text in any chunking gives the same units; ``" ".join(units)`` is the text with its whitespace normalised
(``" ".join(text.split())``).
"""

from __future__ import annotations

import re

_SENTENCE_MARKS = frozenset(".!?…")
_CLAUSE_MARKS = frozenset(",;:—–")
_CLOSERS = frozenset("\"'”’»)]}")
_OPENERS = "\"'“‘«([{"
_WHITESPACE = re.compile(r"\s+")
_INITIALISM = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]", re.UNICODE)  # e.g, U.S, i.e, a.m (the last dot cut off)
ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof sr jr st mt ft vs etc cf approx dept est fig inc ltd co corp lt sgt capt col gen gov "
    "rev hon vol pp ca al viz".split()
)
"""Words (lower case, without their dot) after which a full stop does not end a sentence."""


class ClauseSplitter:
    """Splits a stream of text into speakable units. One instance per reply; ``flush()`` ends it and resets it.

    Not thread-safe; no I/O. Units are stripped and have their whitespace runs collapsed to single spaces.
    """

    __slots__ = ("_max", "_min", "_first_min", "_buf", "_emitted")

    def __init__(self, *, max_chars: int = 160, min_chars: int = 60, first_min_chars: int | None = 20) -> None:
        """``max_chars``: longest unit (bar a single longer word). ``min_chars``: length from which a clause end
        splits a unit. ``first_min_chars``: the same for the first unit (``None``: as ``min_chars``). Both are capped
        at ``max_chars``."""
        first = min_chars if first_min_chars is None else first_min_chars
        if min(max_chars, min_chars, first) <= 0:
            raise ValueError("max_chars, min_chars and first_min_chars must be positive")
        self._max = max_chars
        self._min = min(min_chars, max_chars)
        self._first_min = min(first, max_chars)
        self._buf = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        """Add a text delta; return the units it completes (often none)."""
        self._buf = _normalise(self._buf + text)
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of the reply: return the remaining units and reset the splitter for a new reply."""
        units = self._drain(final=True)
        self._buf = ""
        self._emitted = 0
        return units

    def _drain(self, *, final: bool) -> list[str]:
        units: list[str] = []
        while self._buf:
            min_clause = self._first_min if self._emitted == 0 else self._min
            cut = _find_cut(self._buf, final=final, max_chars=self._max, min_clause=min_clause)
            if cut is None:
                break
            unit = " ".join(self._buf[:cut].split())
            self._buf = self._buf[cut:].lstrip()
            if unit:
                units.append(unit)
                self._emitted += 1
        return units


def _normalise(text: str) -> str:
    """Strip leading whitespace; collapse each whitespace run to "\\n" if it holds a newline, else to " "."""
    return _WHITESPACE.sub(lambda m: "\n" if "\n" in m.group() else " ", text.lstrip())


def _find_cut(text: str, *, final: bool, max_chars: int, min_clause: int) -> int | None:
    """Where the first unit of ``text`` ends (it is ``text[:cut]``), or ``None`` to wait for more text.

    ``text`` is normalised and starts with no whitespace. The answer depends only on text up to one character past
    the chosen boundary (``final``: the text is complete), which makes the splitting independent of chunking.
    """
    n = len(text)
    clause_cuts: list[int] = []
    i = 0
    while i < n and i < max_chars:
        ch = text[i]
        if ch == "\n":
            if _has_letter(text, i):
                return i
            i += 1
            continue
        if ch in _SENTENCE_MARKS or ch in _CLAUSE_MARKS or (ch == "-" and i > 0 and text[i - 1] == " "):
            sentence = ch in _SENTENCE_MARKS
            j = i + 1
            while j < n and text[j] in _SENTENCE_MARKS:
                sentence = True
                j += 1
            while j < n and text[j] in _CLOSERS:
                j += 1
            if j > max_chars:
                break
            if j == n and not final:
                return None  # the next character decides (a digit? a closing quote? more dots?)
            if j == n or text[j].isspace():
                if sentence and j + 1 == n and not final:
                    return None  # a lower-case word next would continue the sentence
                if not _has_letter(text, j):
                    pass
                elif sentence and not _is_abbreviation(text, i, j) and not text[j + 1 : j + 2].islower():
                    return j
                elif not sentence:
                    if j >= min_clause:
                        return j
                    clause_cuts.append(j)
            i = j
            continue
        i += 1
    if n <= max_chars:
        return n if final else None
    return _forced_cut(text, clause_cuts, max_chars, final)


def _forced_cut(text: str, clause_cuts: list[int], max_chars: int, final: bool) -> int | None:
    """Cut a unit that reached ``max_chars``: at its last clause end, else its last word boundary."""
    if clause_cuts and clause_cuts[-1] >= max_chars // 3:
        return clause_cuts[-1]
    space = max(text.rfind(" ", 0, max_chars + 1), text.rfind("\n", 0, max_chars + 1))
    if space > 0:
        return space
    match = _WHITESPACE.search(text, max_chars)  # one word longer than max_chars: keep it whole
    if match is not None:
        return match.start()
    return len(text) if final else None


def _has_letter(text: str, end: int) -> bool:
    return any(ch.isalpha() for ch in text[:end])


def _is_abbreviation(text: str, mark: int, end: int) -> bool:
    """Whether the marks ``text[mark:end]`` are a single full stop ending an abbreviation ("Dr.", "e.g.", "J.")."""
    if text[mark:end].rstrip("".join(_CLOSERS)) != ".":
        return False
    word = text[:mark].rsplit(None, 1)[-1] if mark and not text[mark - 1].isspace() else ""
    word = word.lstrip(_OPENERS).lower()
    if not word:
        return False
    return word in ABBREVIATIONS or bool(_INITIALISM.fullmatch(word)) or (len(word) == 1 and word.isalpha())

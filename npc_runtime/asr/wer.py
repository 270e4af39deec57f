"""Word error rate with a small normalizer (lower case, no punctuation, single spaces), for
tests and benchmarks. Pure."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize", "wer", "word_errors"]

_NOT_WORD = re.compile(r"[^\w\s']|_")


def normalize(text: str) -> list[str]:
    """Words of ``text``, compared loosely: NFKC, lower case, punctuation dropped (apostrophes
    inside words kept, so "don't" stays one word), hyphens split words."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    text = _NOT_WORD.sub(" ", text)
    return [w.strip("'") for w in text.split() if w.strip("'")]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """``(edits, reference words)``: substitutions + deletions + insertions (Levenshtein over words)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (0.0 is perfect; may exceed 1.0).
    An empty reference gives 0.0 for an empty hypothesis, else 1.0."""
    edits, words = word_errors(reference, hypothesis)
    if words == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / words

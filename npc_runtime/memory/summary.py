"""The default summarizer: extractive and deterministic (no model).

It keeps, one fact a line:

* what the partner said about themselves or asked for: their sentences with a first-person word
  (I, I'm, my, me, ...), a request word (please, want, need, can you, ...), a name (a capitalised
  word past the first) or a number, verbatim: a request to the character that says nothing lasting
  about the partner ("Could you hand me the chopsticks?", "I'd like the menu.": no I/my/mine past the
  asking words) as ``Kai asked: "..."``, the rest as ``Kai said: "..."``;
* what the character gave or promised: ``[give x player]`` becomes ``you gave x`` (``you gave x
  to nova`` for anyone else), and its sentences that make a promise (I promise, I owe you, tomorrow,
  next time, I'll save/keep/hold ...) become ``you promised: "..."``. Nothing else the character said
  is kept: a small model fed its own earlier lines copies them ("I'm sorry, I can't carry them." a
  dozen times), so "I'll get it", "see you later" and the like are no promise here;
* game events with a name or a number, as ``event: ...``.

New facts are appended to the ``previous`` summary's lines (an exact repeat is moved to the end
instead), and the oldest lines are dropped while the whole is over ``max_chars``: the newest are kept.

:func:`remembered` is what a session starts with: the stored summary plus the facts of the entries
not yet folded into it — facts only, so a returning player's earlier turns never come back as the
character's own lines to copy. :func:`statements` keeps only what the partner said about themselves (the
compact prompt's memory: a 135M model given old requests, gifts and promises apologizes or loops on them,
measured in npc_runtime/dialogue/prompt.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from npc_runtime.memory.records import MemoryEntry, Recall

_TAG = re.compile(r"\[([^\[\]]*)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SELF = re.compile(r"\b(?:i|im|my|me|mine|myself)\b", re.IGNORECASE)
_REQUEST = re.compile(r"\b(?:please|want|wants|need|needs|can you|could you|would you|bring|looking for)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d")
_PROMISE = re.compile(
    r"\b(?:i promise|i swear|i owe you|tomorrow|next time|next week|(?:i'll|i will) (?:save|keep|hold|remember|bring you|be back))\b",
    re.IGNORECASE,
)
_ASKING = re.compile(
    r"^(?:please\b|(?:can|could|would|will) you\b|(?:can|could|may) i\b|i'd like\b|i want\b|i'll have\b|"
    r"(?:hand|pass|give|bring|get|pour|show|lend|toss|fetch) me\b)", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|my|mine|myself)\b", re.IGNORECASE)
_NOT_A_STATEMENT = re.compile(r'^(?:you |event: |[^"\n]{1,120} asked: ")')
_PARTNER_TARGETS = frozenset({"player", "you"})
_OLD_OWN_LINE = 'you said: "'


class ExtractiveSummarizer:
    """Deterministic summary of what matters later (see the module docstring)."""

    def __init__(self, *, max_chars: int = 600) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.max_chars = max_chars

    async def __call__(self, previous: str, entries: Sequence[MemoryEntry], *,
                       character_name: str, partner_name: str) -> str:
        """Pure and quick (microseconds for a turn's entries): it runs on the loop."""
        return self.summarize(previous, entries, character_name=character_name, partner_name=partner_name)

    def summarize(self, previous: str, entries: Sequence[MemoryEntry], *,
                  character_name: str, partner_name: str) -> str:
        lines = [line for line in (s.strip() for s in previous.splitlines()) if line]
        for entry in entries:
            for fact in facts(entry, partner_name=partner_name):
                _add(lines, fact)
        return _cap(lines, self.max_chars)


def remembered(recall: Recall, *, partner_name: str, max_chars: int = 600) -> str:
    """What a character knows of a partner at the start of a session, as fact lines: the stored summary, then the
    facts of the recent entries (still verbatim in the store), the newest kept within ``max_chars``. A summary
    stored by an earlier version may hold the character's own lines (``you said: "..."``): they are left out."""
    previous = "\n".join(line for line in recall.summary.splitlines() if not line.startswith(_OLD_OWN_LINE))
    return ExtractiveSummarizer(max_chars=max_chars).summarize(previous, recall.recent, character_name="",
                                                                partner_name=partner_name)


def facts(entry: MemoryEntry, *, partner_name: str) -> list[str]:
    """The lines worth keeping from one entry (possibly none)."""
    text = entry.text.replace("\u2019", "'")
    if entry.kind == "player":
        return [f'{partner_name} {"asked" if _asking(s) else "said"}: "{s}"' for s in _sentences(text) if _about_partner(s)]
    if entry.kind == "character":
        out = [_gift(body.split(), partner_name) for body in _TAG.findall(text)]
        spoken = " ".join(_TAG.sub(" ", text).split())
        out += [f'you promised: "{s}"' for s in _sentences(spoken) if _PROMISE.search(s)]
        return [line for line in out if line]
    return [f"event: {s}" for s in _sentences(text) if _NUMBER.search(s) or _has_name(s)]


def statements(summary: str) -> str:
    """``summary`` without its requests (``Kai asked: ...``), the character's gifts and promises (``you ...``) and
    events (``event: ...``): what the partner said about themselves, and any line of another summarizer's own."""
    return "\n".join(line for line in summary.splitlines() if not _NOT_A_STATEMENT.match(line))


def _asking(sentence: str) -> bool:
    """A request to the character that says nothing lasting about the partner."""
    ask = _ASKING.match(sentence)
    return bool(ask) and not _FIRST_PERSON.search(sentence[ask.end():])


def _gift(tag: list[str], partner_name: str) -> str:
    if len(tag) != 3 or tag[0].lower() != "give":
        return ""
    _, thing, target = tag
    if target.lower() in _PARTNER_TARGETS or target.lower() == partner_name.lower():
        return f"you gave {thing}"
    return f"you gave {thing} to {target}"


def _sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in _SENTENCE_END.split(" ".join(text.split()))) if s]


def _about_partner(sentence: str) -> bool:
    return bool(_SELF.search(sentence) or _REQUEST.search(sentence) or _NUMBER.search(sentence) or _has_name(sentence))


def _has_name(sentence: str) -> bool:
    """A capitalised word past the first one that is not "I" (a name, a place, a thing's proper name)."""
    words = _WORD.findall(sentence)[1:]
    return any(w[0].isupper() and w.split("'")[0] != "I" for w in words)


def _add(lines: list[str], fact: str) -> None:
    key = fact.casefold()
    lines[:] = [line for line in lines if line.casefold() != key]
    lines.append(fact)


def _cap(lines: list[str], max_chars: int) -> str:
    kept: list[str] = []
    size = -1  # no newline before the first line
    for line in reversed(lines):
        if size + 1 + len(line) > max_chars:
            break
        kept.append(line)
        size += 1 + len(line)
    if not kept and lines:  # the newest line alone is too long: keep its start
        return lines[-1][: max_chars - 1] + "\u2026"
    return "\n".join(reversed(kept))

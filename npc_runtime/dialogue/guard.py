"""Forbidden topics win over retrieved facts: which topic a line asks about, which passages touch one. Pure.

A persona's ``forbidden_topics`` are short phrases ("his secret broth recipe", "anything outside this world, such
as being an AI or a game character"). Each is cut at commas, semicolons, "such as" and " or " into parts, and each
part into its content words (lower case, stop words and vague words like "anything" dropped, a plural ``s`` and a
possessive cut: "clients'" → "client"). Keyword matching, no model, microseconds a turn:

* a **line** (what the player said) asks about a topic when it holds ``min(2, n)`` of the ``n`` content words of
  one of its parts: "What's your secret recipe?" and "Walk me through your broth recipe" hit "his secret broth
  recipe", "How long does the broth simmer?" does not; "Are you an AI?" hits the part "being an AI";
* a **passage** (a retrieved fact) touches a topic when it holds *every* content word of a part of two words or
  more (a passage is longer than a line, so two words meet by chance more often; a one-word part such as "AI"
  never drops a passage, so lore that mentions a word is kept).

Embedding similarity (the MiniLM that retrieval already runs) was measured as the alternative and separates worse:
over the 6 forbidden-topic lines of tests/data/character_eval.jsonl and 100+ other lines (both action evals, the
rest of that set), the best cosine to a topic or a part was 0.27–0.72 for the forbidden ones and up to 0.62 for
ordinary ones ("Head into the kitchen and check the broth." 0.62 to "his secret broth recipe"): a threshold that
lets no ordinary line through (0.65) catches two of the six, one more than the keywords (the megacorp one).
Measured again for passages (2,153 fact rows of training/data and tests/data/character_eval.jsonl, issue 14): the
best cosine of a secret passage to a topic part is 0.19-0.78 (median 0.49), of the generated innocent ones at most
0.44 - but the authored, innocent chunks of knowledge/jin score 0.50-0.56 ("The noodles", "Where Jin learned": the
subject of a topic is not its secret), so no threshold is safe. Nor is a line rule of one shared (stemmed) word plus
a cosine: at 0.45 it catches 178 of 285 forbidden lines but also 96 of 5,533 ordinary ones ("How many books can I
borrow?" 0.66 to "what other readers borrow"). What a topic means beyond its words is left to the tuned model,
which is trained to refuse even when a passage touches the topic.

When the player's line asks about a forbidden topic, the prompt drops every retrieved fact for that turn and tells
the model to answer with the persona's refusal (:func:`npc_runtime.dialogue.prompt.build_messages`); passages that
touch a topic are dropped on every turn. Sections a knowledge author marks secret never get this far (they are not
ingested: see :mod:`npc_runtime.knowledge.chunk`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

_SPLIT = re.compile(r"[,;]|\bsuch as\b|\bor\b|\bincluding\b|\blike\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOP = frozenset(
    """a an the this that these those his her hers their theirs its my your our me you him them it he she they we i
    to of in on at by for with from into about over under as and or nor but not no any anything something everything
    nothing someone anyone everyone somebody anybody else other others such being be is are was were been how what
    which who whom why when where do does did doing thing things stuff kind sort way ways own very much many some
    all""".split()
)


def content_words(text: str) -> list[str]:
    """The words that carry meaning, normalised: ``"her clients' names"`` → ``["client", "name"]``."""
    out: list[str] = []
    for word in _WORD.findall(text.lower().replace("\u2019", "'")):
        word = word.split("'")[0]
        if word in _STOP or not word:
            continue
        out.append(_stem(word))
    return out


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@lru_cache(maxsize=512)
def topic_parts(topic: str) -> tuple[frozenset[str], ...]:
    """The content words of each part of ``topic`` (parts with no content word left out)."""
    parts = (frozenset(content_words(part)) for part in _SPLIT.split(topic))
    return tuple(p for p in parts if p)


def asked_topics(line: str | None, topics: Sequence[str]) -> list[str]:
    """The forbidden topics ``line`` asks about, in the persona's order (see the module docstring)."""
    if not line or not topics:
        return []
    words = set(content_words(line))
    return [t for t in topics if any(len(part & words) >= min(2, len(part)) for part in topic_parts(t))]


def touches_topic(passage: str, topics: Sequence[str]) -> bool:
    """Whether a retrieved passage holds every content word of a (two words or more) part of a topic."""
    if not topics:
        return False
    words = set(content_words(passage))
    return any(len(part) >= 2 and part <= words for t in topics for part in topic_parts(t))


def admissible_facts(facts: Sequence[str], *, line: str | None, topics: Sequence[str]) -> list[int]:
    """Indexes of the ``facts`` that may reach the prompt: none when ``line`` asks about a forbidden topic, else
    those that touch no topic."""
    if asked_topics(line, topics):
        return []
    return [i for i, fact in enumerate(facts) if not touches_topic(fact, topics)]

"""Which scene entities the player's line names, for the prompt: "Sister Clara" is ``nun_passenger``.

A player names things the way people do — by a character's name ("Sister Clara", "Clara"), by an object's id
read as words ("the fuel can"), by its description ("the jerry can of aviation fuel") or by its last word ("the
flask") — while an action tag needs the scene's id. A capable model maps one to the other from the scene list; the
embedded 135M model mostly does not: asked to hand something to another character it gives it to the player
(held-out give-to-other cases, docs/model.md). The runtime finds the names in the line and says which id each is,
right before the line (:func:`mentions_message`); the ``tuned`` profile shows it, so the adapter is trained with it.

Matching is plain text: case-insensitive, on word boundaries, the longest name wins where two overlap ("tea
kettle" over "kettle"), and a short word that is also common English ("can", "box") is never a name alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from npc_runtime.llm.base import ChatMessage
from npc_runtime.scene import Entity, Scene

#: At most this many names are shown (a line naming more is rare; the list stays short).
MAX_MENTIONS = 4

_ARTICLE = re.compile(r"^(?:a|an|the|some|his|her|their|my|your)\s+", re.IGNORECASE)
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "sister", "brother", "father", "mother", "captain", "sergeant",
                     "lord", "lady", "sir", "madam", "auntie", "uncle", "old", "young", "little", "big", "the"})
#: Words too common to be a name on their own (an id's last word such as fuel_can's "can" or post_box's "box").
_COMMON = frozenset({"can", "box", "case", "set", "kit", "bit", "top", "way", "one", "back", "side", "end", "part",
                     "room", "area", "spot", "place", "front", "table", "thing", "stuff", "pair", "bag"})


@dataclass(frozen=True, slots=True)
class Mention:
    """One name in the line (as the player wrote it) and the entity it is."""

    said: str
    entity: Entity


def _names(entity: Entity, kind: str) -> Iterator[str]:
    """How a player may name ``entity``: its id as words, its name, a name's own words, its description, the
    id's last word."""
    words = entity.id.replace("_", " ")
    yield words
    if entity.name:
        yield entity.name
        for part in re.findall(r"[A-Za-z][A-Za-z'-]+", entity.name):
            if part.lower() not in _TITLES and len(part) >= 3:
                yield part
    if entity.description and kind != "characters":
        yield _ARTICLE.sub("", entity.description.strip().rstrip("."))
    last = words.split()[-1]
    if " " in words and len(last) >= 4 and last not in _COMMON:
        yield last


def mentioned(text: str, scene: Scene, *, self_id: str | None = None) -> list[Mention]:
    """The entities of ``scene`` that ``text`` names, in the order they are named (see the module docstring).
    The speaker itself (``self_id``) and the player are left out: "me" needs no id."""
    if not text.strip():
        return []
    spans: list[tuple[int, int, Entity]] = []
    for kind in ("objects", "locations", "characters"):
        for entity in getattr(scene, kind):
            if entity.id in (self_id, "player"):
                continue
            for name in set(_names(entity, kind)):
                if len(name) < 3 or name.lower() in _COMMON:
                    continue
                pattern = r"(?<![\w'])" + r"\s+".join(map(re.escape, name.split())) + r"(?:e?s)?(?![\w'])"
                spans += [(m.start(), m.end(), entity) for m in re.finditer(pattern, text, re.IGNORECASE)]
    # The longest name wins where two overlap; an id named twice is kept once.
    spans.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
    taken: list[tuple[int, int, Entity]] = []
    for start, end, entity in spans:
        if all(end <= a or start >= b for a, b, _ in taken):
            taken.append((start, end, entity))
    out: list[Mention] = []
    for start, end, entity in sorted(taken, key=lambda s: s[0]):
        if all(m.entity.id != entity.id for m in out):
            out.append(Mention(text[start:end], entity))
    return out[:MAX_MENTIONS]


def mentions_message(mentions: Sequence[Mention], *, player_name: str | None) -> ChatMessage:
    """``Kai's line names: "Sister Clara" = nun_passenger; "the flask" = tea_flask.``"""
    who = f"{player_name}'s" if player_name else "The player's"
    named = "; ".join(f'"{m.said}" = {m.entity.id}' for m in mentions)
    return ChatMessage("system", f"{who} line names: {named}.")


__all__ = ["MAX_MENTIONS", "Mention", "mentioned", "mentions_message"]

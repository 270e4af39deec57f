"""Pieces every prompt profile is made of: the history entry, the scene text, the tag and emotion help. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from npc_runtime.actions import EMOTIONS, arguments_text, vocabulary
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Entity, Scene

VERB_HELP = {
    "move": "[move ID] walks to a place, object or person",
    "grab": "[grab ID] picks up an object",
    "give": "[give OBJECT_ID PERSON_ID] hands an object to a person",
}

#: When each emotion fits (the full and tuned profiles teach them; the grammar admits ``[emotion NAME]``).
EMOTION_HINTS = {
    "joy": "a gift, good news, a friend arriving",
    "anger": "a theft, an insult, a threat",
    "sadness": "a loss, bad news",
    "fear": "danger, a weapon, a fire",
    "surprise": "something sudden or unexpected",
    "disgust": "something foul or cruel",
    "neutral": "back to calm",
}

_TAG = re.compile(r"\[[^\[\]]*\]")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One remembered line: the player spoke, the character spoke (with its action tags), or an event happened."""

    kind: Literal["player", "character", "event"]
    text: str


def words(entity: Entity) -> str:
    """What a player would call ``entity``: its name, else its id with spaces."""
    return entity.name or entity.id.replace("_", " ")


def entity_line(entity: Entity) -> str:
    """``ramen bowl (id ramen_bowl): a steaming bowl of tonkotsu ramen`` — the words a player
    would use next to the id the tag needs (measured: better than the id alone)."""
    extra = entity.description or entity.name or words(entity)
    if entity.name and entity.description:
        extra = f"{entity.name}, {entity.description}"
    return f"{words(entity)} (id {entity.id}): {extra}"


def scene_text(scene: Scene, *, self_id: str, player_name: str | None) -> str:
    """Describe the scene with the ids actions may use."""
    parts = [f"The scene now{': ' + scene.name if scene.name else ''}."]
    for title, entities in (("Objects", scene.objects), ("Places", scene.locations)):
        if entities:
            parts.append(f"{title}: " + "; ".join(entity_line(e) for e in entities) + ".")
    people = [e for e in scene.characters if e.id != self_id]
    if people:
        parts.append("People: " + "; ".join(entity_line(e) for e in people) + ".")
    if player_name:
        parts.append(f"You are talking to {player_name} (id player).")
    return "\n".join(parts)


def limits_line(persona: Persona) -> str | None:
    """The forbidden topics and the refusal, in one line (``None`` without topics)."""
    if not persona.forbidden_topics:
        return None
    return "Never talk about: " + ", ".join(persona.forbidden_topics) + f". If asked, say: \"{persona.refusal}\""


def verbs_help(verbs: Sequence[str], scene: Scene | None = None) -> str:
    """One line on each verb: the built-ins' own words (what the tuned adapter was trained on), and for a verb the
    scene declares its shape and description (``[emote wave|bow|shrug] makes a gesture``). A name the scene does not
    define is left out."""
    known = vocabulary(scene)
    return "; ".join(VERB_HELP[v] if v in VERB_HELP else f"{arguments_text(known[v])} {known[v].description}"
                     for v in verbs if v in known)


def emotion_help(persona: Persona) -> str | None:
    """How to show a feeling with ``[emotion NAME]`` and when (``None`` when the persona has emotions off)."""
    if not persona.emotions:
        return None
    hints = "; ".join(f"{name}: {EMOTION_HINTS[name]}" for name in EMOTIONS if name != "neutral")
    return (
        f"Show a feeling with [emotion NAME] before the words it colours, NAME one of {', '.join(EMOTIONS)}. "
        f"Use one when the moment carries a feeling ({hints}); most replies need none. Your resting mood is {persona.mood}."
    )


def tags_first(reply: str) -> str:
    """``"Sure. [give x player]"`` → ``"[give x player] Sure."`` (the format the compact examples teach)."""
    tags = _TAG.findall(reply)
    spoken = " ".join(_TAG.sub(" ", reply).split())
    return " ".join([*tags, spoken]) if spoken else " ".join(tags)


def strip_tags(reply: str) -> str:
    """The spoken words of a reply, its tags removed."""
    return " ".join(_TAG.sub(" ", reply).split())

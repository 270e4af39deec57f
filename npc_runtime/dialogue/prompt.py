"""The prompt: a stable per-character prefix, then what changes per turn.

Layout (``prefix_messages`` counts the first part, which backends cache)::

    system     persona: identity, backstory, style, goals, limits, how to act   ┐ stable prefix,
    user/asst  the persona's few-shot examples                                   ┘ cached per character
    system     the scene now: objects, places, people (with descriptions)
    user/asst  recent history (game events folded into the user turns)
    user       this turn: pending game events + what the player said

The scene goes after the examples so a scene update never invalidates the cached prefix,
and within one session the scene + history part is itself a growing common prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from npc_runtime.llm.base import ChatMessage
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Entity, Scene

_VERB_HELP = {
    "move": "[move ID] walks to a place, object or person",
    "grab": "[grab ID] picks up an object",
    "give": "[give OBJECT_ID PERSON_ID] hands an object to a person",
}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One remembered line: the player spoke, the character spoke (with its action tags), or an event happened."""

    kind: Literal["player", "character", "event"]
    text: str


def persona_prefix(persona: Persona, verbs: Sequence[str]) -> list[ChatMessage]:
    """The stable prefix for ``persona``: identical across turns and sessions of one character."""
    lines = [f"You are {persona.name}, {persona.role}."]
    if persona.backstory.strip():
        lines.append(persona.backstory.strip())
    if persona.personality:
        lines.append("Personality: " + ", ".join(persona.personality) + ".")
    if persona.speaking_style.strip():
        lines.append("Speaking style: " + persona.speaking_style.strip())
    if persona.goals:
        lines.append("Goals: " + "; ".join(persona.goals) + ".")
    if persona.forbidden_topics:
        lines.append(
            "Never talk about: " + ", ".join(persona.forbidden_topics)
            + f". If asked, say: \"{persona.refusal}\""
        )
    lines.append("Stay in character. Answer in one or two short spoken sentences, no lists, no narration.")
    if verbs:
        lines.append(
            "When the player asks you to do something you can do here, do it by writing action tags at the end "
            "of your reply: " + "; ".join(_VERB_HELP[v] for v in verbs) + ". "
            "Use only ids from the scene. If nothing needs doing, or the thing is not in the scene, write no tag."
        )
    messages = [ChatMessage("system", "\n".join(lines))]
    for example in persona.examples:
        messages.append(ChatMessage("user", example.player))
        messages.append(ChatMessage("assistant", example.reply))
    return messages


def _entity_line(entity: Entity) -> str:
    label = entity.id
    extra = ", ".join(p for p in (entity.name, entity.description) if p)
    return f"{label} ({extra})" if extra else label


def scene_message(scene: Scene, *, self_id: str, player_name: str | None) -> ChatMessage:
    """Describe the scene with the ids actions may use."""
    parts = [f"The scene now{': ' + scene.name if scene.name else ''}."]
    for title, entities in (("Objects", scene.objects), ("Places", scene.locations)):
        if entities:
            parts.append(f"{title}: " + "; ".join(_entity_line(e) for e in entities) + ".")
    people = [e for e in scene.characters if e.id != self_id]
    if people:
        parts.append("People: " + "; ".join(_entity_line(e) for e in people) + ".")
    if player_name:
        parts.append(f"You are talking to {player_name} (id player).")
    return ChatMessage("system", "\n".join(parts))


def turn_messages(history: Sequence[HistoryEntry], *, player_text: str | None) -> list[ChatMessage]:
    """History and the current turn as alternating user/assistant messages.

    Game events are folded into the following user message as ``(Event: ...)`` lines;
    consecutive player lines are joined.
    """
    messages: list[ChatMessage] = []
    pending: list[str] = []
    for entry in history:
        if entry.kind == "character":
            if pending:
                messages.append(ChatMessage("user", "\n".join(pending)))
                pending = []
            messages.append(ChatMessage("assistant", entry.text))
        elif entry.kind == "event":
            pending.append(f"(Event: {entry.text})")
        else:
            pending.append(entry.text)
    if player_text:
        pending.append(player_text)
    if pending:
        messages.append(ChatMessage("user", "\n".join(pending)))
    return messages


def build_messages(
    persona: Persona,
    verbs: Sequence[str],
    scene: Scene,
    history: Sequence[HistoryEntry],
    *,
    player_text: str | None,
    player_name: str | None,
) -> tuple[list[ChatMessage], int]:
    """All messages for one turn and the length of the stable prefix."""
    prefix = persona_prefix(persona, verbs)
    rest = [scene_message(scene, self_id=persona.id, player_name=player_name)]
    rest += turn_messages(history, player_text=player_text)
    return prefix + rest, len(prefix)

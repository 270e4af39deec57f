"""The ``tuned`` prompt profile: what an NPC-tuned adapter of the embedded model was trained on.

One system message and no few-shot example (the fine-tune taught the format, so the examples' ~200 prefix tokens
are saved)::

    system     name and role, backstory, traits, speaking style, goals, "short spoken sentences", the forbidden
               topics and the refusal, the action tags (one line), the emotion names (one line), the scene

This is the format ``training/`` data is rendered in: :func:`npc_runtime.dialogue.prompt.render_record` turns one
training record into exactly the messages the runtime builds for the same turn with this profile, so a change here
changes what the adapter must be retrained on (``scripts/train_npc_adapter.py``, docs/model.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from npc_runtime.actions import EMOTIONS
from npc_runtime.dialogue.parts import limits_line, scene_text, verbs_help
from npc_runtime.llm.base import ChatMessage
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene


def tuned_prefix(persona: Persona, verbs: Sequence[str], scene: Scene, *, player_name: str | None) -> list[ChatMessage]:
    """The stable prefix for ``persona`` in ``scene`` (see the module docstring)."""
    lines = [f"You are {persona.name}, {persona.role}."]
    if persona.backstory:
        lines.append(persona.backstory.strip())
    if persona.personality:
        lines.append("You are " + ", ".join(persona.personality) + ".")
    if persona.speaking_style:
        lines.append("Style: " + persona.speaking_style.strip())
    if persona.goals:
        lines.append("You want to " + "; ".join(persona.goals) + ".")
    lines.append("Speak in one or two short sentences, in character, and finish each one.")
    limits = limits_line(persona)
    if limits:
        lines.append(limits)
    if verbs:
        lines.append("Actions: " + verbs_help(verbs, scene) + ". Only ids of the scene; no tag when the thing is not here.")
    if persona.emotions:
        lines.append("Emotions: [emotion NAME], NAME one of " + ", ".join(EMOTIONS) + f". Resting mood: {persona.mood}.")
    lines.append(scene_text(scene, self_id=persona.id, player_name=player_name))
    return [ChatMessage("system", "\n".join(lines))]

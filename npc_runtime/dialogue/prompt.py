"""The prompt: a stable per-(character, scene, profile) prefix, then what changes per turn.

**The prompt follows the model.** One profile per kind of model (``PROFILES``), each its own prefix:

* ``compact`` (:mod:`~npc_runtime.dialogue.compact`) — the embedded SmolLM2-135M: a short persona, the scene and
  nine examples generated from it (measured on the action evals: what a 135M model follows best);
* ``full`` (:mod:`~npc_runtime.dialogue.full`) — capable models (on vLLM by default): backstory, speaking style,
  goals, the author's examples, emotion tags, staying in character, the forbidden topics;
* ``tuned`` (:mod:`~npc_runtime.dialogue.tuned`) — a fine-tuned adapter: a compact system message without
  examples, the format ``training/`` data is rendered in by :func:`render_record` (one renderer for the training
  script and the runtime).

``auto`` (the server's ``prompt_profile`` setting, ``NPC_PROMPT_PROFILE``) picks, in order: the persona's
``llm.prompt_profile``, the profile the engine declares (an ``LLM`` with a ``prompt_profile`` attribute: the
embedded engine running an NPC-tuned adapter declares ``tuned``), ``full`` for vLLM (unless it serves a tiny
model such as SmolLM2-135M, see :func:`engine_profile`), ``compact`` otherwise. A setting other than ``auto``
forces that profile for every character.

After the prefix, most stable first so each backend's prefix cache reuses the most::

    system     the session's brief (a simulation's role)                               fixed for the session
    system     what the character remembers of this player: fact lines, never its    fixed for the session
               own earlier replies (memory.remembered; compact: only what the player said about themselves)
    system     earlier in this conversation: facts of the turns no longer shown       changes as turns go by
    user/asst  the last few turns (the character's last ``replies`` replies, each once; dialogue.history)
    system     facts retrieved for this turn (none that touch a forbidden topic; none at all when the
               player's line asks about one)
    system     when the player's line asks about a forbidden topic: answer with the refusal
    system     tuned: the scene entities the player's line names, with their ids (dialogue.mentions)
    user       this turn: pending game events + what the player said
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from npc_runtime.actions import declared
from npc_runtime.dialogue.compact import compact_prefix, scene_examples
from npc_runtime.dialogue.full import full_prefix
from npc_runtime.dialogue.guard import admissible_facts, asked_topics
from npc_runtime.dialogue.history import shape_history
from npc_runtime.dialogue.mentions import mentioned, mentions_message
from npc_runtime.dialogue.parts import HistoryEntry, scene_text, tags_first
from npc_runtime.dialogue.tuned import tuned_prefix
from npc_runtime.llm.base import ChatMessage
from npc_runtime.memory.summary import statements
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene

__all__ = [
    "PROFILES", "HistoryEntry", "Profile", "ProfileSetting", "TrainingRecord", "build_messages", "choose_profile",
    "engine_profile", "facts_message", "memory_message", "prefix_key", "refusal_message", "render_record",
    "scene_examples", "scene_text", "tags_first", "turn_messages",
]

Profile = Literal["compact", "full", "tuned"]
ProfileSetting = Literal["auto", "compact", "full", "tuned"]
PROFILES: tuple[Profile, ...] = ("compact", "full", "tuned")

Prefix = Callable[..., list[ChatMessage]]
_TINY_MODEL = re.compile(r"(?<![0-9])(?:135|360)m\b")


def _every_fact(summary: str) -> str:
    return summary


@dataclass(frozen=True, slots=True)
class _Spec:
    prefix: Prefix
    #: How many of the character's own latest replies stay as chat turns (older turns become facts).
    replies: int
    #: Which remembered fact lines the model is shown.
    memory: Callable[[str], str]
    #: Whether the scene entities the player's line names are shown with their ids (:mod:`.mentions`).
    mentions: bool = False


#: The compact prompt is shown only what the player said about themselves. Measured with SmolLM2-135M, one player
#: coming back twelve times with one request each (chopsticks, ramen, menu, sake; seeds 1-12, memory on): with the
#: earlier turns replayed as chat turns (before), every reply was a variant of "No, no. You can't just ..." and 9
#: gave the chopsticks (5 right); with every fact (old requests, "you gave ...", "you promised ...") Jin acted only
#: in the first turn and apologized in the other 11; the same without the requests, or without gifts and promises;
#: without requests and gifts it acted in 6 of the first 7 (5 right) until a promise it had made up ("tomorrow at
#: 10am") was copied into every later reply; with the player's own statements only it acted in 10 of 12, 8 right.
_SPECS: dict[str, _Spec] = {
    "compact": _Spec(compact_prefix, replies=2, memory=statements),
    "full": _Spec(full_prefix, replies=6, memory=_every_fact),
    "tuned": _Spec(tuned_prefix, replies=2, memory=_every_fact, mentions=True),
}


def engine_profile(llm: Any) -> Profile:
    """What ``auto`` picks for an engine (when the persona names none): the profile the engine declares (its
    ``prompt_profile`` attribute, or that of the engine it wraps), ``full`` for vLLM, else ``compact``.

    A vLLM engine serving a tiny model (a name with ``135m`` or ``360m``: SmolLM2, this project's vLLM default on
    a CPU) gets ``compact`` too: the prompt follows the model, not the backend. Measured with SmolLM2-135M on the
    action evals (seed 1): compact 8/14 public, 22/45 dev; full 1/14, 7/45 (it copies the authored examples' tags)."""
    for engine in (llm, getattr(llm, "inner", None)):
        declared = getattr(engine, "prompt_profile", None)
        if declared in PROFILES:
            return declared  # type: ignore[no-any-return]
    name = str(getattr(llm, "name", "")).lower()
    return "full" if name.startswith("vllm") and not _TINY_MODEL.search(name) else "compact"


def choose_profile(setting: ProfileSetting, persona: Persona, *, engine: Profile) -> Profile:
    """The profile for ``persona``'s turns: a forced ``setting``, else the persona's, else the engine's."""
    if setting != "auto":
        return setting
    return persona.llm.prompt_profile or engine


def prefix_key(persona: Persona, scene: Scene, profile: Profile = "compact") -> str:
    """Cache key of the prefix: the character, a digest of its scene, and the profile."""
    digest = hashlib.sha1(scene.model_dump_json().encode()).hexdigest()[:12]
    return f"{persona.id}:{digest}" + ("" if profile == "compact" else f":{profile}")


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


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def memory_message(summary: str, *, player_name: str | None) -> ChatMessage:
    """What the character remembers from earlier conversations with this player (stable for a session): fact
    lines, one a bullet."""
    who = player_name or "the player"
    lines = [line.strip() for line in summary.splitlines() if line.strip()]
    return ChatMessage("system", f"What you remember from earlier conversations with {who}:\n{_bullets(lines)}")


def earlier_message(facts: Sequence[str]) -> ChatMessage:
    """Facts of this conversation's turns that are no longer shown as turns."""
    return ChatMessage("system", "Earlier in this conversation:\n" + _bullets(facts))


def facts_message(facts: Sequence[str]) -> ChatMessage:
    """Passages retrieved from the character's knowledge for this turn."""
    return ChatMessage("system", "Facts you know (use them if they answer the question):\n" + _bullets(facts))


def refusal_message(persona: Persona, topics: Sequence[str], *, player_name: str | None) -> ChatMessage:
    """The player's line asks about a forbidden topic: the refusal wins over anything known."""
    who = player_name or "The player"
    return ChatMessage("system", f"{who} is asking about {'; '.join(topics)}, which you never talk about. "
                                 f"Do not explain anything about it. Answer only: \"{persona.refusal}\"")


def build_messages(
    persona: Persona,
    verbs: Sequence[str],
    scene: Scene,
    history: Sequence[HistoryEntry],
    *,
    player_text: str | None,
    player_name: str | None,
    memory_summary: str = "",
    facts: Sequence[str] = (),
    brief: str = "",
    profile: Profile = "compact",
) -> tuple[list[ChatMessage], int]:
    """All messages for one turn and the length of the stable prefix (see the module docstring for the order)."""
    spec = _SPECS[profile]
    prefix = spec.prefix(persona, verbs, scene, player_name=player_name)
    messages = list(prefix)
    if brief:
        messages.append(ChatMessage("system", brief))
    remembered = spec.memory(memory_summary)
    if remembered.strip():
        messages.append(memory_message(remembered, player_name=player_name))
    earlier, kept = shape_history(history, replies=spec.replies, partner_name=player_name or "the player")
    earlier = spec.memory("\n".join(earlier)).splitlines()
    if earlier:
        messages.append(earlier_message(earlier))
    turn = turn_messages(kept, player_text=player_text)
    topics = asked_topics(player_text, persona.forbidden_topics)
    usable = [facts[i] for i in admissible_facts(facts, line=player_text, topics=persona.forbidden_topics)]
    if turn and turn[-1].role == "user":
        extra = [facts_message(usable)] if usable else []
        if topics:
            extra.append(refusal_message(persona, topics, player_name=player_name))
        named = mentioned(player_text, scene, self_id=persona.id) if spec.mentions and player_text else []
        if named:
            extra.append(mentions_message(named, player_name=player_name))
        turn[-1:-1] = extra
    return messages + turn, len(prefix)


# -- training records: one renderer for the training script and the runtime


class RecordLine(BaseModel):
    """One earlier line of a training record's conversation."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["player", "character", "event"]
    text: str = Field(min_length=1)


class TrainingRecord(BaseModel):
    """One training example, as ``training/`` data holds it (one JSON object a line)::

        {"persona": {...a persona, as in characters/*.yaml...}, "scene": {...a scene, as a client declares it...},
         "player_name": "Kai", "memory": ["Kai said: \\"I'm allergic to eggs.\\"", "you gave ramen_bowl"],
         "facts": ["The shop closes at three in the morning."],
         "history": [{"kind": "player", "text": "Hi."}, {"kind": "character", "text": "Welcome, friend."}],
         "event": "Kai knocks a bowl off the counter.", "player": "Oops. Sorry!",
         "reply": "[emotion surprise] Careful there, friend. [grab ramen_bowl]"}

    ``player`` and/or ``event`` (a game event this turn, before the player's line) is required; ``memory`` is
    memory's fact lines (:func:`npc_runtime.memory.remembered`); ``id``, ``kind`` and ``note`` are bookkeeping,
    never rendered. The rendering is exactly what a session builds for the same turn."""

    model_config = ConfigDict(extra="forbid")

    persona: Persona
    scene: Scene
    player_name: str | None = None
    memory: list[str] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    history: list[RecordLine] = Field(default_factory=list)
    event: str | None = None
    player: str | None = None
    brief: str = ""
    reply: str = Field(min_length=1)
    id: str = ""
    kind: str = ""
    note: str = ""

    @model_validator(mode="after")
    def _something_happens(self) -> "TrainingRecord":
        if not (self.player or self.event):
            raise ValueError("a record needs the player's line (player) or a game event (event)")
        return self


def render_record(record: Mapping[str, Any] | TrainingRecord, *, profile: Profile = "tuned") -> tuple[list[ChatMessage], str]:
    """``(messages, reply)`` for one training record: the messages the runtime builds for that turn with
    ``profile`` (``tuned`` by default: what an adapter is trained on), and the reply to learn. The verbs are the
    session's (:func:`~npc_runtime.dialogue.turn.allowed_verbs`): the persona's and the scene's own, so a scene's
    declared verbs are in the prompt's help as they are when served."""
    r = record if isinstance(record, TrainingRecord) else TrainingRecord.model_validate(record)
    history = [HistoryEntry(line.kind, line.text) for line in r.history]
    if r.event:
        history.append(HistoryEntry("event", r.event))
    messages, _ = build_messages(
        r.persona, declared(r.scene, r.persona.actions), r.scene.without(r.persona.id), history, player_text=r.player,
        player_name=r.player_name, memory_summary="\n".join(r.memory), facts=r.facts, brief=r.brief, profile=profile,
    )
    return messages, r.reply

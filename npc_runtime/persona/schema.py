"""The persona schema: one YAML file per character, validated with pydantic (unknown keys rejected)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from npc_runtime.actions import VERB_ARITY, VERBS, action_problem, vocabulary
from npc_runtime.scene import EntityId, Scene, VerbName

#: A verb a persona may list: a built-in, or one its ``scene`` declares (the game declares it at run time).
ActionVerb = VerbName
Emotion = Literal["neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust"]
ALL_VERBS: tuple[str, ...] = VERBS
__all__ = ["ALL_VERBS", "VERB_ARITY", "ActionVerb", "Example", "LLMSettings", "Persona", "VoiceSettings", "example_problems"]

_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_TAG_BODY = re.compile(r"^[a-z]+(?: [a-z][a-z0-9_]{0,47})*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Example(_Strict):
    """A few-shot exchange. ``reply`` may hold action tags such as ``[give chopsticks player]``;
    the ids in it should exist in ``Persona.scene`` (a typical scene for this character, in the same
    shape a client declares). ``example_problems`` checks them."""

    player: str = Field(min_length=1, max_length=400, description="What the player says.")
    reply: str = Field(min_length=1, max_length=600, description="The character's answer, with inline action tags.")


class VoiceSettings(_Strict):
    engine: Literal["piper", "espeak", "coqui"] = Field(default="piper", description="TTS engine.")
    voice: str | None = Field(default=None, description="Voice: an installed voice package name or a model file path.")
    speed: float = Field(default=1.0, gt=0.25, le=4.0, description="Speaking rate multiplier.")


class ListenSettings(_Strict):
    end_silence_ms: int = Field(default=500, ge=150, le=5000, description="Silence after the player's voice that ends their turn (ms). Lower answers sooner; too low cuts people off mid-thought.")
    barge_in_ms: int = Field(default=500, ge=0, le=5000, description="Speech over the character shorter than this (ms) is a backchannel ('uh-huh', 'mm') and does not interrupt it; 0 interrupts at once.")


class LatencySettings(_Strict):
    first_audio_ms: int | None = Field(default=None, ge=100, le=10000, description="Target time to first audio (ms from the player's line or the end of their voice); default: the server's.")
    filler: str | None = Field(default="Hmm, let me see.", max_length=80, description="Said (pre-synthesized) when the reply would miss the target; null: never.")
    late_max_tokens: int | None = Field(default=40, ge=8, le=1024, description="A reply that waited for the model (behind other sessions' turns, a quarter of the target or more) and starts past the filler point (75% of the target) is capped at this many tokens, so a queue of turns drains sooner; null: never cap.")


class LLMSettings(_Strict):
    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    repeat_penalty: float = Field(default=1.0, ge=1.0, le=2.0, description="Above 1 discourages repeating words (small models loop: 'no, no, no').")
    max_tokens: int = Field(default=80, ge=8, le=1024, description="Cap on one reply's length, in tokens.")
    model: str | None = Field(default=None, description="Override the server's model name (vLLM backend).")
    prompt_profile: Literal["compact", "full", "tuned"] | None = Field(
        default=None, description="The prompt for this character when the server's prompt_profile is auto: compact (small "
                                  "models), full (the whole persona, capable models), tuned (a fine-tuned adapter); "
                                  "default: the engine's (full on vLLM, compact on the embedded model or a tiny model on vLLM).")


class Persona(_Strict):
    """One character, as written in ``characters/<id>.yaml`` (see ``characters/README.md``)."""

    id: EntityId = Field(description="Stable id; the file name without .yaml must match it.")
    name: str = Field(min_length=1, max_length=80)
    role: str = Field(min_length=1, max_length=200, description="One line: who this is (e.g. 'owner of a ramen shop').")
    backstory: str = Field(default="", max_length=4000)
    personality: list[str] = Field(default_factory=list, max_length=20, description="Traits, a few words each.")
    speaking_style: str = Field(default="", max_length=1000, description="How the character talks.")
    goals: list[str] = Field(default_factory=list, max_length=20)
    forbidden_topics: list[str] = Field(default_factory=list, max_length=50, description="What the character will not talk about.")
    refusal: str = Field(default="I'd rather not talk about that.", max_length=300, description="What it says when asked about a forbidden topic.")
    scene: Scene | None = Field(default=None, description="A typical scene for this character (the shape a client declares); the ids in the examples' tags are checked against it.")
    actions: list[ActionVerb] = Field(default_factory=list, max_length=32,
                                      description="Verbs this character may use: move, grab, give, or verbs its scene declares (scene.verbs); "
                                                  "empty = talks only. Verbs a client's scene declares are usable too.")
    mood: Emotion = Field(default="neutral", description="Resting mood: the face's expression when no [emotion] tag says otherwise.")
    emotions: bool = Field(default=True, description="Let replies change the face with [emotion <name>] tags.")
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    knowledge: list[str] = Field(default_factory=list, description="Extra knowledge sources (paths), besides knowledge/<id>/ and knowledge/world/.")
    use_world_knowledge: bool = Field(default=True, description="Use the shared knowledge/world/ folder.")
    llm: LLMSettings = Field(default_factory=LLMSettings)
    listen: ListenSettings = Field(default_factory=ListenSettings, description="Voice input: end of turn and barge-in.")
    latency: LatencySettings = Field(default_factory=LatencySettings, description="Time-to-first-audio budget and its filler line.")
    examples: list[Example] = Field(default_factory=list, max_length=12, description="Few-shot exchanges, part of the cached prompt prefix.")

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, actions: list[ActionVerb], info: ValidationInfo) -> list[ActionVerb]:
        if len(set(actions)) != len(actions):
            raise ValueError("each verb may appear only once")
        known = vocabulary(info.data.get("scene"))
        for index, verb in enumerate(actions):
            if verb not in known:
                raise ValueError(f"item {index}: {verb!r} is not a verb: built in are move, grab and give; "
                                 "declare another in this persona's scene.verbs (name, description, args)")
        return actions


def example_problems(persona: Persona) -> list[tuple[int, str]]:
    """Check the action tags in ``persona.examples``' replies; return ``(example index, problem)`` pairs.

    A tag is ``[verb id ...]``: one of the persona's verbs, single spaces, lowercase ids, the right
    number of ids for the verb. When the persona declares a ``scene``, ids must name entities of the
    right kind in it (``move``: a location or character; ``grab``: an object; ``give``: an object, then
    a character), and never the persona itself.
    """
    problems: list[tuple[int, str]] = []
    for index, example in enumerate(persona.examples):
        problems.extend((index, p) for p in _reply_problems(persona, example.reply))
    return problems


def _reply_problems(persona: Persona, reply: str) -> list[str]:
    problems: list[str] = []
    for match in _BRACKETED.finditer(reply):
        problem = _tag_problem(persona, match.group(1))
        if problem:
            problems.append(f"tag [{match.group(1)}]: {problem}")
    leftover = _BRACKETED.sub("", reply)
    if "[" in leftover or "]" in leftover:
        problems.append("unbalanced '[' or ']' in reply")
    return problems


def _tag_problem(persona: Persona, body: str) -> str | None:
    if not _TAG_BODY.match(body):
        return "malformed: expected [verb id ...] with lowercase ids separated by single spaces"
    problem = action_problem(body, persona.scene, persona.actions, persona.id)
    return problem.replace("in the scene", "in this persona's scene") if problem else None

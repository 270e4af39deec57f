"""The persona schema: one YAML file per character, validated with pydantic (unknown keys rejected)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from npc_runtime.scene import EntityId

ActionVerb = Literal["move", "grab", "give"]
ALL_VERBS: tuple[ActionVerb, ...] = ("move", "grab", "give")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Example(_Strict):
    """A few-shot exchange. ``reply`` may hold action tags such as ``[give chopsticks player]``;
    the ids in it should exist in ``scene`` (a typical scene for this character, in the same
    shape a client declares)."""

    player: str = Field(min_length=1, max_length=400, description="What the player says.")
    reply: str = Field(min_length=1, max_length=600, description="The character's answer, with inline action tags.")


class VoiceSettings(_Strict):
    engine: Literal["piper", "espeak", "coqui"] = Field(default="piper", description="TTS engine.")
    voice: str | None = Field(default=None, description="Voice: an installed voice package name or a model file path.")
    speed: float = Field(default=1.0, gt=0.25, le=4.0, description="Speaking rate multiplier.")


class LLMSettings(_Strict):
    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    max_tokens: int = Field(default=80, ge=8, le=1024, description="Cap on one reply's length, in tokens.")
    model: str | None = Field(default=None, description="Override the server's model name (vLLM backend).")


class Persona(_Strict):
    id: EntityId = Field(description="Stable id; the file name without .yaml must match it.")
    name: str = Field(min_length=1, max_length=80)
    role: str = Field(min_length=1, max_length=200, description="One line: who this is (e.g. 'owner of a ramen shop').")
    backstory: str = Field(default="", max_length=4000)
    personality: list[str] = Field(default_factory=list, max_length=20, description="Traits, a few words each.")
    speaking_style: str = Field(default="", max_length=1000, description="How the character talks.")
    goals: list[str] = Field(default_factory=list, max_length=20)
    forbidden_topics: list[str] = Field(default_factory=list, max_length=50, description="What the character will not talk about.")
    refusal: str = Field(default="I'd rather not talk about that.", max_length=300, description="What it says when asked about a forbidden topic.")
    actions: list[ActionVerb] = Field(default_factory=list, description="Verbs this character may use; empty = talks only.")
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    knowledge: list[str] = Field(default_factory=list, description="Extra knowledge sources (paths), besides knowledge/<id>/ and knowledge/world/.")
    use_world_knowledge: bool = Field(default=True, description="Use the shared knowledge/world/ folder.")
    llm: LLMSettings = Field(default_factory=LLMSettings)
    examples: list[Example] = Field(default_factory=list, max_length=12, description="Few-shot exchanges, part of the cached prompt prefix.")

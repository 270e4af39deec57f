"""The scene a client declares: what actions may name, and the game's own verbs. Pure types, no I/O."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Ids are lowercase words joined by ``_`` (they go verbatim into the action grammar and
#: into the prompt, so they must read like words for the model and need no escaping).
ID_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
_ID_RE = re.compile(ID_PATTERN)
MAX_ENTITIES_PER_KIND = 64
#: The verbs every character knows (defined in :mod:`npc_runtime.actions`); a scene may not redeclare them.
BUILTIN_VERB_NAMES = ("move", "grab", "give")

EntityId = Annotated[str, Field(pattern=ID_PATTERN, description="Lowercase id: a-z, 0-9, '_', starts with a letter, at most 48 chars.")]


class Entity(BaseModel):
    """One thing in the scene: an object, a location or a character."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: EntityId
    name: str | None = Field(default=None, max_length=80, description="Display name (e.g. the player's name).")
    description: str | None = Field(default=None, max_length=300, description="Short description shown to the model.")


#: Verb and argument names: lowercase words joined by ``_`` (they go into the grammar, the tags and the prompt).
VERB_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
MAX_VERBS = 32
MAX_VERB_ARGS = 4
ArgType = Literal["object", "location", "character", "any"]
VerbName = Annotated[str, Field(pattern=VERB_PATTERN, description="Lowercase name: a-z, 0-9, '_', starts with a letter, at most 32 chars.")]


class VerbArg(BaseModel):
    """One argument of a verb: an entity of the scene of a ``type`` (``object``, ``location``, ``character``, or
    ``any`` of them), or one of a closed list of ``values`` (e.g. ``[wave, bow, shrug]``). Exactly one of the two."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: VerbName
    type: ArgType | None = Field(default=None, description="The kind of scene entity it names (object, location, character, any).")
    values: tuple[VerbName, ...] | None = Field(default=None, min_length=1, max_length=32, description="Or: the words it may be (a closed list).")

    @model_validator(mode="after")
    def _one_kind(self) -> "VerbArg":
        if (self.type is None) == (self.values is None):
            raise ValueError(f"argument {self.name!r}: give either a type (object, location, character, any) or values, not both")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ValueError(f"argument {self.name!r}: duplicate values")
        return self


class VerbDef(BaseModel):
    """An action a character may take: ``[name arg1 arg2 ...]`` in a reply. The built-ins (``move``, ``grab``,
    ``give``) are defined this way in :mod:`npc_runtime.actions`; a scene may declare more."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: VerbName
    description: str = Field(min_length=1, max_length=120, description="One line for the model: what the verb does (e.g. 'sits down on a seat').")
    args: tuple[VerbArg, ...] = Field(default=(), max_length=MAX_VERB_ARGS, description="Its arguments, in the order the tag names them (at most 4).")

    @model_validator(mode="after")
    def _unique_args(self) -> "VerbDef":
        names = [a.name for a in self.args]
        if len(set(names)) != len(names):
            raise ValueError(f"verb {self.name!r}: duplicate argument names")
        return self


class Scene(BaseModel):
    """What the character can see and act on. Ids are unique across all three lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, max_length=120, description="A title for the scene.")
    objects: list[Entity] = Field(default_factory=list, max_length=MAX_ENTITIES_PER_KIND, description="Things that can be grabbed and given.")
    locations: list[Entity] = Field(default_factory=list, max_length=MAX_ENTITIES_PER_KIND, description="Places that can be moved to.")
    characters: list[Entity] = Field(default_factory=list, max_length=MAX_ENTITIES_PER_KIND, description="People (the player included) that can be moved to and given things.")
    verbs: list[VerbDef] = Field(default_factory=list, max_length=MAX_VERBS,
                                 description="The game's own actions in this scene, besides the built-in move, grab and give (at most 32); "
                                             "the characters may use them.")

    @model_validator(mode="after")
    def _unique_ids(self) -> "Scene":
        seen: set[str] = set()
        for kind in ("objects", "locations", "characters"):
            for entity in getattr(self, kind):
                if entity.id in seen:
                    raise ValueError(f"duplicate id {entity.id!r} in {kind}: ids must be unique across objects, locations and characters")
                seen.add(entity.id)
        names = [v.name for v in self.verbs]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"verbs: {name!r} is declared twice")
            if name in BUILTIN_VERB_NAMES or name == "emotion":
                raise ValueError(f"verbs: {name!r} is built in; declare only new verbs")
        return self

    def ids(self, kind: str) -> list[str]:
        return [e.id for e in getattr(self, kind)]

    def all_ids(self) -> list[str]:
        return self.ids("objects") + self.ids("locations") + self.ids("characters")

    def without(self, character_id: str) -> "Scene":
        """The scene as seen by ``character_id`` (a character cannot give to or move to itself)."""
        chars = [c for c in self.characters if c.id != character_id]
        return self.model_copy(update={"characters": chars})


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))

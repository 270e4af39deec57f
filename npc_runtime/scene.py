"""The scene a client declares: what actions may name. Pure types, no I/O."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Ids are lowercase words joined by ``_`` (they go verbatim into the action grammar and
#: into the prompt, so they must read like words for the model and need no escaping).
ID_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"
_ID_RE = re.compile(ID_PATTERN)
MAX_ENTITIES_PER_KIND = 64

EntityId = Annotated[str, Field(pattern=ID_PATTERN, description="Lowercase id: a-z, 0-9, '_', starts with a letter, at most 48 chars.")]


class Entity(BaseModel):
    """One thing in the scene: an object, a location or a character."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: EntityId
    name: str | None = Field(default=None, max_length=80, description="Display name (e.g. the player's name).")
    description: str | None = Field(default=None, max_length=300, description="Short description shown to the model.")


class Scene(BaseModel):
    """What the character can see and act on. Ids are unique across all three lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, max_length=120, description="A title for the scene.")
    objects: list[Entity] = Field(default_factory=list, max_length=MAX_ENTITIES_PER_KIND, description="Things that can be grabbed and given.")
    locations: list[Entity] = Field(default_factory=list, max_length=MAX_ENTITIES_PER_KIND, description="Places that can be moved to.")
    characters: list[Entity] = Field(default_factory=list, max_length=MAX_ENTITIES_PER_KIND, description="People (the player included) that can be moved to and given things.")

    @model_validator(mode="after")
    def _unique_ids(self) -> "Scene":
        seen: set[str] = set()
        for kind in ("objects", "locations", "characters"):
            for entity in getattr(self, kind):
                if entity.id in seen:
                    raise ValueError(f"duplicate id {entity.id!r} in {kind}: ids must be unique across objects, locations and characters")
                seen.add(entity.id)
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

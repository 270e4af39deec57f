"""The training inputs, loaded and cross-checked: personas with their styles, scenes, casting and the split.

Used by training/generate.py (see its docstring for the files).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import templates as tp
import yaml

from npc_runtime.persona.loader import load_persona
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Entity, Scene

#: A forbidden topic about the world itself (being an AI, a game character): answered by the ai_question kind.
AI_TOPIC = re.compile(r"\bAI\b|game character", re.IGNORECASE)


class Invalid(Exception):
    """A generated record broke a rule (the message says which): the generator is wrong, fix it."""


# -- loading ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cast:
    persona: Persona
    style: dict[str, Any]

    @property
    def temper(self) -> str:
        return self.style["temper"]

    def can(self, verb: str) -> bool:
        return verb in self.persona.actions


@dataclass(frozen=True)
class Stage:
    stem: str
    scene: Scene  # as the client declares it
    view: Scene  # as the character sees it (itself removed)
    exit: str
    home: bool  # the persona's own place (its lines marked @home are said only here)

    @property
    def player(self) -> Entity:
        return next(c for c in self.view.characters if c.id == "player")

    @property
    def others(self) -> list[Entity]:
        return [c for c in self.view.characters if c.id != "player"]


#: A verb scene's name: the scene it is made from, this, a number (``hilde_forge__verbs1``).
VARIANT = "__verbs"


def base_scene(stem: str) -> str:
    """The scene a verb scene is made from (a scene's own name otherwise)."""
    return stem.split(VARIANT, 1)[0]


@dataclass
class World:
    casts: dict[str, Cast]
    scenes: dict[str, Scene]
    casting: dict[str, dict[str, Any]]
    heldout_personas: frozenset[str]
    heldout_scenes: frozenset[str]
    #: scene -> its verb scenes (the same scene with props and 1-3 declared verbs; generate.py makes them)
    variants: dict[str, list[str]] = field(default_factory=dict)

    def stage(self, stem: str, persona_id: str) -> Stage:
        scene, base = self.scenes[stem], base_scene(stem)
        home = next(s for s, entry in self.casting.items() if persona_id in entry["personas"])
        return Stage(stem, scene, scene.without(persona_id), self.casting[base]["exit"], base == home)

    def add_variant(self, base: str, stem: str, scene: Scene) -> None:
        """Add a verb scene made from ``base`` (held out when ``base`` is)."""
        self.scenes[stem] = scene
        self.variants.setdefault(base, []).append(stem)
        if base in self.heldout_scenes:
            self.heldout_scenes = self.heldout_scenes | {stem}


def load_world(root: Path) -> World:
    casts = {}
    for path in sorted((root / "personas").glob("*.yaml")):
        persona = load_persona(path)
        style = yaml.safe_load((root / "styles" / f"{persona.id}.yaml").read_text(encoding="utf-8"))
        _check_style(persona, style)
        casts[persona.id] = Cast(persona, style)
    scenes = {p.stem: Scene.model_validate_json(p.read_text(encoding="utf-8")) for p in sorted((root / "scenes").glob("*.json"))
              if VARIANT not in p.stem}  # verb scenes are generate.py's output
    casting = json.loads((root / "casting.json").read_text(encoding="utf-8"))["scenes"]
    split = json.loads((root / "split.json").read_text(encoding="utf-8"))
    world = World(casts, scenes, casting, frozenset(split["heldout_personas"]), frozenset(split["heldout_scenes"]))
    _check_world(world)
    return world


def _check_style(persona: Persona, style: dict[str, Any]) -> None:
    where = f"styles/{persona.id}.yaml"
    if style.get("temper") not in tp.TEMPERS:
        raise Invalid(f"{where}: temper must be one of {tp.TEMPERS}")
    for key in ("give", "grab", "move", "absent", "cannot", "deflect", "human"):
        bank = style.get(key, [])
        if not isinstance(bank, list) or not all(isinstance(s, str) and s.strip() for s in bank):
            raise Invalid(f"{where}: {key} must be a list of lines")
    for verb in ("give", "grab", "move"):
        if (verb in persona.actions) != bool(style.get(verb)):
            raise Invalid(f"{where}: lines for {verb!r} exactly when the persona may {verb}")
    if len(persona.actions) < 3 and not style.get("cannot"):
        raise Invalid(f"{where}: a persona without every verb needs 'cannot' lines")
    topics = [t for t in persona.forbidden_topics if not AI_TOPIC.search(t)]
    if len(style.get("forbidden", [])) != len(topics):
        raise Invalid(f"{where}: one 'forbidden' entry per forbidden topic (not the AI one): {len(topics)}")
    for entry in style.get("forbidden", []):
        if not (entry.get("q") and entry.get("leak") and entry.get("fact")):
            raise Invalid(f"{where}: each forbidden entry needs q, leak and fact")
    for entry in style.get("knowledge", []):
        if not (entry.get("fact") and entry.get("q") and entry.get("a") and entry.get("keywords")):
            raise Invalid(f"{where}: each knowledge entry needs fact, q, a and keywords")
    for section in ("chat", "backstory"):
        if not all(e.get("q") and e.get("a") for e in style.get(section, [])):
            raise Invalid(f"{where}: each {section} entry needs q and a")
    if not style.get("knowledge") or not style.get("backstory") or not style.get("chat"):
        raise Invalid(f"{where}: needs knowledge, backstory and chat")
    for kind in ("theft", "insult", "gift", "danger"):
        if not style.get("events", {}).get(kind):
            raise Invalid(f"{where}: events.{kind} needs lines")


def _check_world(world: World) -> None:
    if set(world.casting) != set(world.scenes):
        raise Invalid(f"casting.json and scenes/ differ: {sorted(set(world.casting) ^ set(world.scenes))}")
    cast_anywhere = {p for s in world.casting.values() for p in s["personas"]}
    if cast_anywhere != set(world.casts):
        raise Invalid(f"casting.json and personas/ differ: {sorted(cast_anywhere ^ set(world.casts))}")
    if not world.heldout_personas <= set(world.casts) or not world.heldout_scenes <= set(world.scenes):
        raise Invalid("split.json names an unknown persona or scene")
    for stem, entry in world.casting.items():
        scene = world.scenes[stem]
        if entry["exit"] not in scene.ids("locations") or "player" not in scene.ids("characters"):
            raise Invalid(f"scenes/{stem}.json: needs the player and the exit {entry['exit']!r} among its locations")
        for pid in entry["personas"]:
            if len([c for c in scene.without(pid).characters if c.id != "player"]) < 1:
                raise Invalid(f"scenes/{stem}.json: {pid} needs someone besides the player to give things to")
        if stem not in world.heldout_scenes:
            named = {c.id for c in scene.characters} & world.heldout_personas
            if named:
                raise Invalid(f"scenes/{stem}.json is a training scene but names held-out personas {sorted(named)}")

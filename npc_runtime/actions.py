"""The action vocabulary and its rules: which ``[verb args...]`` are valid in a scene. Verbs are data.

A verb is a :class:`~npc_runtime.scene.VerbDef`: a name, a one-line description for the model, and typed arguments
(an ``object``, ``location``, ``character`` or ``any`` entity of the scene, or one of a closed list of ``values``).
The built-ins are defined that way here (:data:`BUILTINS`): ``move <target: any>``, ``grab <object: object>``,
``give <object: object> <target: character>``; a client declares more in its scene (``scene.verbs``: ``sit <seat:
object>``, ``emote <gesture: wave|bow|shrug>``), and the character may use them. The character itself is never
named. One source of truth for the grammar builder (:mod:`npc_runtime.dialogue.grammar`), the tag parser, the prompt's
help, the persona checker, the protocol's action events and the simulation runner. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from npc_runtime.scene import Scene, VerbArg, VerbDef

#: The built-in verbs, defined like any other (in the order the grammar lists them).
BUILTINS: tuple[VerbDef, ...] = (
    VerbDef(name="move", description="walks to a place, object or person", args=(VerbArg(name="target", type="any"),)),
    VerbDef(name="grab", description="picks up an object", args=(VerbArg(name="object", type="object"),)),
    VerbDef(name="give", description="hands an object to a person",
            args=(VerbArg(name="object", type="object"), VerbArg(name="target", type="character"))),
)
_BUILTIN = {v.name: v for v in BUILTINS}

#: The built-in verbs' names.
VERBS: tuple[str, ...] = tuple(_BUILTIN)

#: Emotions a reply may show with ``[emotion <name>]`` (the face changes on that word).
EMOTIONS: tuple[str, ...] = ("neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust")


def parse_emotion(tag_body: str) -> str | None:
    """``"emotion joy"`` → ``"joy"``; ``None`` for anything else."""
    words = tag_body.split()
    return words[1] if len(words) == 2 and words[0] == "emotion" and words[1] in EMOTIONS else None


#: How many arguments each built-in verb takes.
VERB_ARITY: dict[str, int] = {v.name: len(v.args) for v in BUILTINS}


def vocabulary(scene: Scene | None) -> dict[str, VerbDef]:
    """Every verb a scene knows, by name: the built-ins, then the scene's own (in declaration order)."""
    verbs = dict(_BUILTIN)
    if scene is not None:
        verbs.update((v.name, v) for v in scene.verbs)
    return verbs


@dataclass(frozen=True, slots=True)
class Action:
    """One parsed action: ``verb`` and its ``args`` by name, in the verb's order. ``object`` and ``target`` are the
    arguments of those names (the built-ins': ``give`` ``object`` to the character ``target``; ``grab`` ``object``;
    ``move`` to ``target``). A built-in may be made from ``object``/``target`` alone: ``args`` follows."""

    verb: str
    object: str | None = None
    target: str | None = None
    args: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.args and self.verb in _BUILTIN:
            named = {"object": self.object, "target": self.target}
            args = tuple((a.name, named[a.name]) for a in _BUILTIN[self.verb].args if named.get(a.name) is not None)
            object.__setattr__(self, "args", args)

    @classmethod
    def of(cls, verb: VerbDef, values: Sequence[str]) -> "Action":
        """The action ``[verb values...]`` (as many values as the verb has arguments)."""
        args = tuple(zip((a.name for a in verb.args), values, strict=True))
        named = dict(args)
        return cls(verb.name, object=named.get("object"), target=named.get("target"), args=args)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(value for _, value in self.args)

    @property
    def arguments(self) -> dict[str, str]:
        """The arguments by name (what ``response.action`` carries as ``args``)."""
        return dict(self.args)

    def as_list(self) -> list[str]:
        """``["give", obj, char]``, ``["grab", obj]``, ``["emote", "bow"]`` (eval format)."""
        return [self.verb, *self.values]

    def as_tag(self) -> str:
        """The tag text the model writes, e.g. ``[give ramen_bowl player]``."""
        return "[" + " ".join(self.as_list()) + "]"


@dataclass(frozen=True, slots=True)
class Targets:
    """The ids each argument type may name, after removing the character itself."""

    objects: tuple[str, ...]
    locations: tuple[str, ...]
    characters: tuple[str, ...]

    @classmethod
    def of(cls, scene: Scene, self_id: str | None) -> "Targets":
        def keep(kind: str) -> tuple[str, ...]:
            return tuple(i for i in scene.ids(kind) if i != self_id)

        return cls(keep("objects"), keep("locations"), keep("characters"))

    @property
    def any(self) -> tuple[str, ...]:
        return self.objects + self.locations + self.characters

    def choices(self, arg: VerbArg) -> tuple[str, ...]:
        """What ``arg`` may be: the ids of its type, or its values."""
        if arg.values is not None:
            return arg.values
        return {"object": self.objects, "location": self.locations, "character": self.characters, "any": self.any}[arg.type or "any"]


def declared(scene: Scene | None, verbs: Sequence[str]) -> list[str]:
    """The verbs a character may use in ``scene``: ``verbs`` (the persona's) and the scene's own, no duplicates."""
    names = list(verbs)
    if scene is not None:
        names += [v.name for v in scene.verbs if v.name not in names]
    return names


def usable_definitions(scene: Scene, verbs: Sequence[str], *, self_id: str | None = None) -> list[VerbDef]:
    """The definitions, in vocabulary order (built-ins first), of the verbs the character may use (the persona's
    ``verbs`` and the scene's own) *and* the scene gives something to act on for every argument (no objects: no
    grab/give; no other character: no give; nothing: no move). A name the scene does not define is skipped."""
    _check_verbs(verbs)
    t = Targets.of(scene, self_id)
    allowed = set(declared(scene, verbs))
    return [v for name, v in vocabulary(scene).items() if name in allowed and all(t.choices(a) for a in v.args)]


def usable_verbs(scene: Scene, verbs: Sequence[str], *, self_id: str | None = None) -> tuple[str, ...]:
    """The names of :func:`usable_definitions`."""
    return tuple(v.name for v in usable_definitions(scene, verbs, self_id=self_id))


def parse_action(
    tag_body: str,
    scene: Scene,
    verbs: Sequence[str],
    self_id: str | None = None,
) -> Action | None:
    """Parse the inside of a tag (``"give ramen_bowl player"``, without brackets) into an
    :class:`Action`, or ``None`` when the grammar would not have allowed it. Tolerates
    surrounding and repeated whitespace; names, ids and values must match exactly."""
    words = tag_body.split()
    if not words:
        return None
    definitions = {v.name: v for v in usable_definitions(scene, verbs, self_id=self_id)}
    verb = definitions.get(words[0])
    if verb is None or len(words) - 1 != len(verb.args):
        return None
    t = Targets.of(scene, self_id)
    if any(value not in t.choices(arg) for arg, value in zip(verb.args, words[1:])):
        return None
    return Action.of(verb, words[1:])


def validate_action(action: Action, scene: Scene, verbs: Sequence[str], self_id: str | None = None) -> bool:
    """Whether the grammar built for the same inputs admits ``action`` (same rules exactly)."""
    parsed = parse_action(" ".join(action.as_list()), scene, verbs, self_id)
    return parsed is not None and parsed == action


def action_problem(tag_body: str, scene: Scene | None, verbs: Sequence[str], self_id: str | None = None) -> str | None:
    """Why ``tag_body`` is not a valid action in ``scene`` (``None`` when it is), in words.
    With ``scene=None`` only the verb, the number of arguments and self-reference are checked."""
    words = tag_body.split()
    if not words:
        return "empty tag"
    name, args = words[0], words[1:]
    known = vocabulary(scene)
    if name not in known:
        return f"unknown verb {name!r} (verbs: {', '.join(known)})"
    allowed = declared(scene, verbs)
    if name not in allowed:
        return f"verb {name!r} is not allowed here (allowed: {', '.join(allowed) or 'none'})"
    verb = known[name]
    if len(args) != len(verb.args):
        return f"{name!r} takes {len(verb.args)} argument(s), got {len(args)}"
    if self_id is not None and self_id in args:
        return f"{self_id!r} is the character itself: it cannot name itself"
    if scene is None:
        return None
    t = Targets.of(scene, self_id)
    for arg, value in zip(verb.args, args):
        if value not in t.choices(arg):
            kind = f"one of {', '.join(arg.values)}" if arg.values is not None else _KIND_WORDS[arg.type or "any"]
            return f"{value!r} is not {kind} in the scene" if arg.values is None else f"{value!r} is not {kind}"
    return None


def arguments_text(verb: VerbDef) -> str:
    """The tag's shape for the prompt's help: ``[give OBJECT_ID PERSON_ID]``, ``[emote wave|bow|shrug]``."""
    words = [verb.name]
    for arg in verb.args:
        words.append("|".join(arg.values) if arg.values is not None else _PLACEHOLDERS[arg.type or "any"])
    return "[" + " ".join(words) + "]"


_KIND_WORDS: Mapping[str, str] = {"object": "an object", "location": "a location", "character": "a character", "any": "a declared id"}
_PLACEHOLDERS: Mapping[str, str] = {"object": "OBJECT_ID", "location": "PLACE_ID", "character": "PERSON_ID", "any": "ID"}


def _check_verbs(verbs: Sequence[str]) -> None:
    if isinstance(verbs, str):
        raise TypeError("verbs must be a sequence of verb names, not a string")

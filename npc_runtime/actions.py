"""The action vocabulary and its rules: which ``[verb ids]`` are valid in a scene.

``move <target>`` (any declared id), ``grab <object>``, ``give <object> <character>``; the
character itself is never named. One source of truth for the grammar builder
(:mod:`npc_runtime.dialogue.grammar`), the tag parser and the persona checker. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from npc_runtime.scene import Scene

#: The whole action vocabulary, in the order the grammar lists it.
VERBS: tuple[str, ...] = ("move", "grab", "give")

#: Emotions a reply may show with ``[emotion <name>]`` (the face changes on that word).
EMOTIONS: tuple[str, ...] = ("neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust")


def parse_emotion(tag_body: str) -> str | None:
    """``"emotion joy"`` → ``"joy"``; ``None`` for anything else."""
    words = tag_body.split()
    return words[1] if len(words) == 2 and words[0] == "emotion" and words[1] in EMOTIONS else None


#: How many ids each verb takes.
VERB_ARITY: dict[str, int] = {"move": 1, "grab": 1, "give": 2}


@dataclass(frozen=True, slots=True)
class Action:
    """One parsed action. ``give``: ``object`` to the character ``target``; ``grab``:
    ``object``; ``move``: to ``target`` (an object, a location or a character)."""

    verb: str
    object: str | None = None
    target: str | None = None

    def as_list(self) -> list[str]:
        """``["give", obj, char]``, ``["grab", obj]``, ``["move", target]`` (eval format)."""
        return [self.verb, *(a for a in (self.object, self.target) if a is not None)]

    def as_tag(self) -> str:
        """The tag text the model writes, e.g. ``[give ramen_bowl player]``."""
        return "[" + " ".join(self.as_list()) + "]"


@dataclass(frozen=True, slots=True)
class Targets:
    """The ids each verb may name, after removing the character itself."""

    objects: tuple[str, ...]
    move_targets: tuple[str, ...]
    recipients: tuple[str, ...]

    @classmethod
    def of(cls, scene: Scene, self_id: str | None) -> "Targets":
        def keep(kind: str) -> tuple[str, ...]:
            return tuple(i for i in scene.ids(kind) if i != self_id)

        objects, locations, characters = keep("objects"), keep("locations"), keep("characters")
        return cls(objects, objects + locations + characters, characters)


def usable_verbs(scene: Scene, verbs: Sequence[str], *, self_id: str | None = None) -> tuple[str, ...]:
    """The verbs, in canonical order, that the persona allows *and* the scene gives something
    to act on (no objects: no grab/give; no other character: no give; nothing: no move)."""
    _check_verbs(verbs)
    t = Targets.of(scene, self_id)
    possible = {"move": bool(t.move_targets), "grab": bool(t.objects), "give": bool(t.objects and t.recipients)}
    return tuple(v for v in VERBS if v in verbs and possible[v])


def parse_action(
    tag_body: str,
    scene: Scene,
    verbs: Sequence[str],
    self_id: str | None = None,
) -> Action | None:
    """Parse the inside of a tag (``"give ramen_bowl player"``, without brackets) into an
    :class:`Action`, or ``None`` when the grammar would not have allowed it. Tolerates
    surrounding and repeated whitespace; ids and verbs must match exactly."""
    words = tag_body.split()
    if not words:
        return None
    verb, args = words[0], words[1:]
    if verb == "move" and len(args) == 1:
        action = Action("move", target=args[0])
    elif verb == "grab" and len(args) == 1:
        action = Action("grab", object=args[0])
    elif verb == "give" and len(args) == 2:
        action = Action("give", object=args[0], target=args[1])
    else:
        return None
    return action if validate_action(action, scene, verbs, self_id) else None


def validate_action(action: Action, scene: Scene, verbs: Sequence[str], self_id: str | None = None) -> bool:
    """Whether the grammar built for the same inputs admits ``action`` (same rules exactly)."""
    if action.verb not in usable_verbs(scene, verbs, self_id=self_id):
        return False
    t = Targets.of(scene, self_id)
    if action.verb == "move":
        return action.object is None and action.target in t.move_targets
    if action.verb == "grab":
        return action.target is None and action.object in t.objects
    return action.object in t.objects and action.target in t.recipients


def action_problem(tag_body: str, scene: Scene | None, verbs: Sequence[str], self_id: str | None = None) -> str | None:
    """Why ``tag_body`` is not a valid action in ``scene`` (``None`` when it is), in words.
    With ``scene=None`` only the verb, the number of ids and self-reference are checked."""
    words = tag_body.split()
    if not words:
        return "empty tag"
    verb, args = words[0], words[1:]
    if verb not in VERBS:
        return f"unknown verb {verb!r} (verbs: {', '.join(VERBS)})"
    if verb not in verbs:
        return f"verb {verb!r} is not allowed here (allowed: {', '.join(verbs) or 'none'})"
    if len(args) != VERB_ARITY[verb]:
        return f"{verb!r} takes {VERB_ARITY[verb]} id(s), got {len(args)}"
    if self_id is not None and self_id in args:
        return f"{self_id!r} is the character itself: it cannot name itself"
    if scene is None:
        return None
    t = Targets.of(scene, self_id)
    expected = {"move": [("a declared id", t.move_targets)], "grab": [("an object", t.objects)],
                "give": [("an object", t.objects), ("a character", t.recipients)]}[verb]
    for arg, (kind, ids) in zip(args, expected):
        if arg not in ids:
            return f"{arg!r} is not {kind} in the scene"
    return None


def _check_verbs(verbs: Sequence[str]) -> None:
    if isinstance(verbs, str):
        raise TypeError("verbs must be a sequence of verb names, not a string")
    unknown = sorted(set(verbs) - set(VERBS))
    if unknown:
        raise ValueError(f"unknown verbs {unknown}; the vocabulary is {list(VERBS)}")
